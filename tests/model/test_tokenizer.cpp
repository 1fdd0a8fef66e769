// ClipTokenizer against the reference's token ids (goldens/tokens.json) and
// further cases produced by the reference, plus broken tokenizer folders.
#include "model/tokenizer.h"

#include "model/json_file.h"
#include "tests/support/data.h"
#include "model/safetensors.h"  // ModelError

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using via::model::ClipTokenizer;
using via::model::ModelError;

namespace {

std::string data_dir() { return via::test::reference_data(); }

std::string tokenizer_dir() { return data_dir() + "/tiny_ip2p/tokenizer"; }

// The ModelError a tokenizer folder gives ("" and a failure when it loads).
std::string tokenizer_error(const fs::path& dir) {
  try {
    ClipTokenizer tok(dir.string());
  } catch (const ModelError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ModelError";
  return {};
}

TEST(ClipTokenizer, MatchesTheReferenceGoldens) {
  const ClipTokenizer tok(tokenizer_dir());
  const nlohmann::json golden = via::model::read_json_file(data_dir() + "/goldens/tokens.json");
  EXPECT_EQ(tok.max_length(), golden["model_max_length"].get<int64_t>());
  EXPECT_EQ(tok.bos_id(), golden["bos_token_id"].get<int64_t>());
  EXPECT_EQ(tok.eos_id(), golden["eos_token_id"].get<int64_t>());
  EXPECT_EQ(tok.pad_id(), golden["pad_token_id"].get<int64_t>());
  EXPECT_EQ(tok.vocab_size(), golden["vocab_size"].get<int64_t>());

  bool saw_truncated = false;
  for (const auto& entry : golden["instructions"]) {
    const std::string text = entry["text"].get<std::string>();
    SCOPED_TRACE("instruction: \"" + text + "\"");
    const via::model::TokenizedText t = tok.encode_padded(text);
    EXPECT_EQ(t.ids, entry["input_ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.untruncated_length, entry["untruncated_length"].get<int64_t>());
    EXPECT_EQ(t.truncated, entry["truncated"].get<bool>());
    EXPECT_EQ(tok.tokens(tok.encode(text)), entry["tokens"].get<std::vector<std::string>>());
    saw_truncated |= t.truncated;
  }
  EXPECT_TRUE(saw_truncated) << "the goldens must include an over-long instruction";
}

TEST(ClipTokenizer, TruncationKeepsTheEndToken) {
  const ClipTokenizer tok(tokenizer_dir());
  std::string text;
  for (int i = 0; i < 100; ++i) text += "sky ";
  const via::model::TokenizedText t = tok.encode_padded(text);
  ASSERT_EQ(t.ids.size(), 77u);
  EXPECT_TRUE(t.truncated);
  EXPECT_EQ(t.untruncated_length, 102);
  EXPECT_EQ(t.ids.front(), tok.bos_id());
  EXPECT_EQ(t.ids.back(), tok.eos_id());
  EXPECT_EQ(t.ids[75], t.ids[1]);  // still "sky</w>" right before the end token

  const via::model::TokenizedText exact = tok.encode_padded(text.substr(0, 75 * 4));  // 75 words + BOS/EOS = 77
  EXPECT_FALSE(exact.truncated);
  EXPECT_EQ(exact.untruncated_length, 77);
}

TEST(ClipTokenizer, InputIdsStacksPaddedRows) {
  const ClipTokenizer tok(tokenizer_dir());
  const at::Tensor ids = tok.input_ids({"make it look like a painting", ""});
  ASSERT_EQ(ids.sizes(), (at::IntArrayRef{2, 77}));
  EXPECT_EQ(ids.scalar_type(), at::kLong);
  EXPECT_EQ(ids[0][0].item<int64_t>(), tok.bos_id());
  EXPECT_EQ(ids[1][1].item<int64_t>(), tok.eos_id());
  EXPECT_EQ(ids[1][76].item<int64_t>(), tok.pad_id());
  const std::vector<int64_t> row0(ids[0].data_ptr<int64_t>(), ids[0].data_ptr<int64_t>() + 77);
  EXPECT_EQ(row0, tok.encode_padded("make it look like a painting").ids);
}

// Ids from transformers 5.23.0's CLIPTokenizer (tokenizers 0.23.3) on the
// tiny tokenizer: `CLIPTokenizer.from_pretrained(dir)(text).input_ids`.
struct ReferenceCase {
  const char* what;
  const char* text;
  std::vector<int64_t> ids;
};

TEST(ClipTokenizer, MatchesTheReferenceOnUnicodeEdgeCases) {
  const std::vector<ReferenceCase> cases = {
      {"decomposed accent composes (NFC)", "cafe\xcc\x81", {832, 525, 69, 127, 358, 833}},
      {"marks reordered canonically", "a\xcc\x81\xcc\x96", {832, 127, 350, 136, 500, 833}},
      {"Hangul jamo compose", "\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", {832, 166, 108, 479, 833}},
      {"singleton decomposition (Kelvin sign + acute)", "\xe2\x84\xaa\xcc\x81", {832, 157, 116, 365, 833}},
      {"capital I with dot lowercases to two characters", "\xc4\xb0STANBUL", {832, 328, 136, 485, 541, 527, 658, 331, 833}},
      {"Greek sigma lowercased per character", "\xce\x9f\xce\x94\xce\x9f\xce\xa3", {832, 138, 123, 138, 112, 138, 123, 139, 481, 833}},
      {"unicode whitespace collapses", "a\xc2\xa0\xe2\x80\x83\xe3\x80\x80" "b\xe2\x80\xa8" "c", {832, 320, 321, 322, 833}},
      {"control characters are not whitespace", "a\x1c" "b", {832, 320, 472, 321, 833}},
      {"digits split one by one, other numbers too", "x2024\xc2\xb2\xc2\xbd\xe2\x85\xab",
       {832, 343, 273, 271, 273, 275, 126, 366, 126, 377, 158, 227, 375, 833}},
      {"contractions", "don't WE'LL ''sun", {832, 67, 521, 6, 339, 86, 324, 6, 800, 6, 262, 82, 84, 333, 833}},
      {"special tokens written in the text", "a<|endoftext|>b <|startoftext|>", {832, 320, 833, 321, 832, 833}},
      {"special token in another case is text", "a <|ENDOFTEXT|> b",
       {832, 320, 27, 347, 68, 77, 554, 69, 83, 68, 87, 339, 91, 285, 321, 833}},
      {"CJK and emoji", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80x",
       {832, 162, 245, 98, 162, 250, 105, 164, 103, 508, 172, 253, 246, 478, 343, 833}},
      {"replacement character", "a\xef\xbf\xbd" "b", {832, 320, 171, 123, 377, 321, 833}},
  };
  const ClipTokenizer tok(tokenizer_dir());
  for (const ReferenceCase& c : cases) EXPECT_EQ(tok.encode(c.text), c.ids) << c.what;
  // Invalid UTF-8 reads as U+FFFD, as the reference's Python strings would show it.
  EXPECT_EQ(tok.encode("a\xff" "b"), tok.encode("a\xef\xbf\xbd" "b"));
  EXPECT_EQ(tok.encode("a\xe2\x82"), tok.encode("a\xef\xbf\xbd\xef\xbf\xbd"));
}

class BrokenTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_tokenizer_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::copy(tokenizer_dir(), dir_, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string error_of() const { return tokenizer_error(dir_); }
  nlohmann::json vocab() const { return via::model::read_json_file((dir_ / "vocab.json").string()); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(dir_ / name) << text; }

  fs::path dir_;
};

TEST_F(BrokenTokenizerTest, UnknownSymbolsBecomeTheUnknownToken) {
  // Reference (same call, vocab.json without "Ā</w>", id 444): "a\0\0" -> [832, 320, 188, 833, 833].
  nlohmann::json v = vocab();
  v.erase("\xc4\x80</w>");
  write("vocab.json", v.dump());
  const ClipTokenizer tok(dir_.string());
  EXPECT_EQ(tok.encode(std::string("a\0\0", 3)), (std::vector<int64_t>{832, 320, 188, 833, 833}));
  EXPECT_EQ(tok.unk_id(), 833);
}

TEST_F(BrokenTokenizerTest, MissingFolderOrFiles) {
  try {
    ClipTokenizer tok((dir_ / "nope").string());
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer folder not found"), std::string::npos) << e.what();
  }
  fs::remove(dir_ / "merges.txt");
  EXPECT_NE(error_of().find((dir_ / "merges.txt").string()), std::string::npos);
  fs::remove(dir_ / "vocab.json");
  EXPECT_NE(error_of().find((dir_ / "vocab.json").string()), std::string::npos);
}

TEST_F(BrokenTokenizerTest, MalformedMerges) {
  write("merges.txt", "#version: 0.2\nt h\nthree parts here\n");
  std::string msg = error_of();
  EXPECT_NE(msg.find("merges.txt: line 3 is not two space-separated symbols"), std::string::npos) << msg;
  write("merges.txt", "#version: 0.2\nt h\nq z\n");
  msg = error_of();
  EXPECT_NE(msg.find("merges.txt: line 3: 'qz' is not in vocab.json"), std::string::npos) << msg;
}

TEST_F(BrokenTokenizerTest, MalformedVocabAndSpecialTokens) {
  write("vocab.json", "{\"a\": \"x\"}");
  EXPECT_NE(error_of().find("id of 'a' is not a non-negative integer"), std::string::npos);
  write("vocab.json", "[1, 2");
  EXPECT_NE(error_of().find("not valid JSON"), std::string::npos);

  fs::copy(tokenizer_dir() + "/vocab.json", dir_ / "vocab.json", fs::copy_options::overwrite_existing);
  write("special_tokens_map.json", "{\"pad_token\": \"<|pad|>\"}");
  const std::string msg = error_of();
  EXPECT_NE(msg.find("the padding token '<|pad|>' is not in the vocabulary"), std::string::npos) << msg;
}

TEST_F(BrokenTokenizerTest, PadTokenFromTheConfig) {
  // SD-2-style tokenizers pad with "!" (id 0 here) instead of the end token.
  write("special_tokens_map.json", "{\"pad_token\": \"!\"}");
  const ClipTokenizer tok(dir_.string());
  EXPECT_EQ(tok.pad_id(), 0);
  const std::vector<int64_t> ids = tok.encode_padded("sky").ids;
  EXPECT_EQ(ids[2], tok.eos_id());
  EXPECT_EQ(ids[3], 0);
}

// transformers 5 saves a tokenizer as tokenizer.json + tokenizer_config.json
// only (data/model_forms/tokenizer_tf5, written by make_model_forms.py from the
// same tiny tokenizer): it must give the ids of the vocab.json/merges.txt form.
std::string tf5_dir() { return data_dir() + "/model_forms/tokenizer_tf5"; }

TEST(ClipTokenizerJson, Transformers5FolderGivesTheReferenceIds) {
  ASSERT_FALSE(fs::exists(tf5_dir() + "/vocab.json"));
  ASSERT_FALSE(fs::exists(tf5_dir() + "/merges.txt"));
  const ClipTokenizer json_tok(tf5_dir());
  const ClipTokenizer legacy(tokenizer_dir());
  EXPECT_EQ(json_tok.vocab_size(), legacy.vocab_size());
  EXPECT_EQ(json_tok.bos_id(), legacy.bos_id());
  EXPECT_EQ(json_tok.eos_id(), legacy.eos_id());
  EXPECT_EQ(json_tok.pad_id(), legacy.pad_id());
  EXPECT_EQ(json_tok.unk_id(), legacy.unk_id());
  EXPECT_EQ(json_tok.max_length(), 77);
  const nlohmann::json golden = via::model::read_json_file(data_dir() + "/model_forms/tokens_tf5.json");
  ASSERT_EQ(golden["instructions"].size(), 8u);
  for (const auto& entry : golden["instructions"]) {
    const std::string text = entry["text"].get<std::string>();
    SCOPED_TRACE("instruction: \"" + text + "\"");
    EXPECT_EQ(json_tok.encode_padded(text).ids, entry["input_ids"].get<std::vector<int64_t>>());
  }
  // Texts that exercise many merges: every word of the goldens, joined, and their tokens.
  std::string all;
  for (const auto& entry : golden["instructions"]) all += entry["text"].get<std::string>() + " ";
  EXPECT_EQ(json_tok.encode(all), legacy.encode(all));
  EXPECT_EQ(json_tok.tokens(json_tok.encode(all)), legacy.tokens(legacy.encode(all)));
}

class TokenizerJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "via_tokjson_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::copy(tf5_dir(), dir_, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    json_ = via::model::read_json_file((dir_ / "tokenizer.json").string());
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const nlohmann::json& j) const { std::ofstream(dir_ / "tokenizer.json") << j.dump(); }
  std::string error_of() const { return tokenizer_error(dir_); }
  fs::path dir_;
  nlohmann::json json_;
};

TEST_F(TokenizerJsonTest, OlderStringMergesReadTheSame) {
  // tokenizers < 0.20 stored each merge as one "a b" string.
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : json_["model"]["merges"]) merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  json_["model"]["merges"] = merges;
  write(json_);
  const std::string text = "turn the sky into a sunset, make it look like a painting";
  EXPECT_EQ(ClipTokenizer(dir_.string()).encode(text), ClipTokenizer(tf5_dir()).encode(text));
  // and the merge order is the rank: reversing it changes the result
  std::reverse(json_["model"]["merges"].begin(), json_["model"]["merges"].end());
  write(json_);
  EXPECT_NE(ClipTokenizer(dir_.string()).encode(text), ClipTokenizer(tf5_dir()).encode(text));
}

TEST_F(TokenizerJsonTest, VocabJsonTakesPrecedenceWhenBothArePresent) {
  fs::copy(tokenizer_dir() + "/vocab.json", dir_ / "vocab.json");
  json_["model"]["merges"] = nlohmann::json::array();  // would break every multi-byte word
  write(json_);
  try {
    ClipTokenizer tok(dir_.string());
    FAIL() << "vocab.json without merges.txt must be an error, not a silent fallback";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt"), std::string::npos) << e.what();
  }
}

TEST_F(TokenizerJsonTest, RefusesOtherTokenizersAndBrokenEntries) {
  nlohmann::json j = json_;
  j["model"]["type"] = "WordPiece";
  write(j);
  std::string msg = error_of();
  EXPECT_NE(msg.find("tokenizer.json: model type 'WordPiece'"), std::string::npos) << msg;

  j = json_;
  j["model"]["end_of_word_suffix"] = "";
  write(j);
  msg = error_of();
  EXPECT_NE(msg.find("is not CLIP's byte-level BPE"), std::string::npos) << msg;

  j = json_;
  j["model"]["merges"][3] = nlohmann::json::array({"q", "z"});
  write(j);
  msg = error_of();
  EXPECT_NE(msg.find("model.merges[3]: 'qz' is not in model.vocab"), std::string::npos) << msg;

  j = json_;
  j["model"]["merges"][5] = 7;
  write(j);
  msg = error_of();
  EXPECT_NE(msg.find("model.merges[5] is neither"), std::string::npos) << msg;

  j = json_;
  j["model"].erase("vocab");
  write(j);
  msg = error_of();
  EXPECT_NE(msg.find("model.vocab"), std::string::npos) << msg;

  j = json_;
  j["added_tokens"][0]["id"] = 5;
  write(j);
  msg = error_of();
  EXPECT_NE(msg.find("added token '<|startoftext|>' is not in model.vocab under the same id"), std::string::npos)
      << msg;

  std::ofstream(dir_ / "tokenizer.json") << "{\"model\": ";
  msg = error_of();
  EXPECT_NE(msg.find("tokenizer.json: not valid JSON"), std::string::npos) << msg;

  fs::remove(dir_ / "tokenizer.json");
  msg = error_of();
  EXPECT_NE(msg.find("vocab.json: cannot open"), std::string::npos) << msg;
}

}  // namespace
