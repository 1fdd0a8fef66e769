// The attention layer and the attention seam: the math of one layer against
// an explicit softmax(QK^T/sqrt(d))V, and on the tiny UNet: a recording
// control sees every attn1/attn2 in forward order with its checkpoint path,
// step and branches; returning the layer's own K/V changes nothing; K/V with
// another token count are used as given.
#include "model/attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model/unet.h"
#include "test_unet_support.h"

namespace via::model {
namespace {

using testing::golden;
using testing::max_abs_error;
using testing::reference_data;

// softmax(q k^T / sqrt(d)) v per head in fp64; q [B,N,H*D], k/v [B,M,H*D].
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads) {
  auto split = [heads](const at::Tensor& x) {
    return x.to(at::kDouble).view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);  // [B,H,T,D]
  };
  const at::Tensor qh = split(q), kh = split(k), vh = split(v);
  const double scale = 1.0 / std::sqrt(static_cast<double>(qh.size(-1)));
  const at::Tensor probs = at::softmax(at::matmul(qh, kh.transpose(-1, -2)) * scale, -1);
  return at::matmul(probs, vh).transpose(1, 2).reshape({q.size(0), q.size(1), -1});
}

AttentionOptions cross_options() {
  AttentionOptions o;
  o.name = "test.attn2";
  o.query_dim = 24;
  o.cross_attention_dim = 16;
  o.heads = 3;
  o.dim_head = 8;
  return o;
}

// Replaces K/V with fixed tensors and remembers what it was given.
class FixedControl : public AttentionControl {
 public:
  FixedControl(at::Tensor k, at::Tensor v) : k_(std::move(k)), v_(std::move(v)) {}
  std::pair<at::Tensor, at::Tensor> keys_values(const AttentionSite& site, const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v) override {
    seen_q = q;
    seen_k = k;
    layer = site.layer;
    return {k_, v_};
  }
  at::Tensor seen_q, seen_k;
  std::string layer;

 private:
  at::Tensor k_, v_;
};

TEST(AttentionLayer, MatchesExplicitSoftmax) {
  at::manual_seed(0);
  Attention attn(cross_options(), ParamInit{});
  EXPECT_FALSE(attn->to_q->bias.defined());
  EXPECT_TRUE(attn->to_out[0]->as<LinearImpl>()->bias.defined());
  const at::Tensor x = at::randn({2, 10, 24}), ctx_states = at::randn({2, 7, 16});
  at::NoGradGuard no_grad;
  const at::Tensor out = attn->forward(x, ctx_states, AttentionContext{});
  const at::Tensor q = attn->to_q(x), k = attn->to_k(ctx_states), v = attn->to_v(ctx_states);
  const at::Tensor expected = attn->to_out[0]->as<LinearImpl>()->forward(reference_attention(q, k, v, 3).to(at::kFloat));
  EXPECT_LE(max_abs_error(out, expected), 1e-5);
}

// A control's K/V with another token count are attended to instead of the
// layer's own; the control sees the layer's name and own projections.
TEST(AttentionLayer, ControlKeysValuesReplaceOwn) {
  at::manual_seed(1);
  Attention attn(cross_options(), ParamInit{});
  const at::Tensor x = at::randn({2, 10, 24}), ctx_states = at::randn({2, 7, 16});
  const at::Tensor k = at::randn({2, 19, 24}), v = at::randn({2, 19, 24});
  FixedControl control(k, v);
  AttentionContext ctx;
  ctx.control = &control;
  at::NoGradGuard no_grad;
  const at::Tensor out = attn->forward(x, ctx_states, ctx);
  EXPECT_EQ(control.layer, "test.attn2");
  EXPECT_EQ(control.seen_q.sizes(), (at::IntArrayRef{2, 10, 24}));
  EXPECT_EQ(control.seen_k.sizes(), (at::IntArrayRef{2, 7, 24}));
  const at::Tensor expected = attn->to_out[0]->as<LinearImpl>()->forward(
      reference_attention(attn->to_q(x), k, v, 3).to(at::kFloat));
  EXPECT_LE(max_abs_error(out, expected), 1e-5);
  EXPECT_GT(max_abs_error(out, attn->forward(x, ctx_states, AttentionContext{})), 1e-2);
}

// Long sequences: the math path (libtorch 1.x) computes the scores in slices
// of heads to bound memory (here two slices); the result is unchanged.
TEST(AttentionLayer, LongSequenceMatchesExplicitSoftmax) {
  at::manual_seed(4);
  const at::Tensor q = at::randn({1, 4096, 8}), k = at::randn({1, 4096, 8}), v = at::randn({1, 4096, 8});
  at::NoGradGuard no_grad;
  EXPECT_LE(max_abs_error(scaled_dot_product(q, k, v, 2), reference_attention(q, k, v, 2)), 1e-5);
}

TEST(AttentionLayer, BadControlOutputIsNamed) {
  Attention attn(cross_options(), ParamInit{});
  const at::Tensor x = at::randn({2, 10, 24}), ctx_states = at::randn({2, 7, 16});
  FixedControl wrong_batch(at::randn({1, 7, 24}), at::randn({1, 7, 24}));
  FixedControl wrong_width(at::randn({2, 7, 20}), at::randn({2, 7, 20}));
  FixedControl mismatched(at::randn({2, 7, 24}), at::randn({2, 8, 24}));
  for (AttentionControl* control : std::vector<AttentionControl*>{&wrong_batch, &wrong_width, &mismatched}) {
    AttentionContext ctx;
    ctx.control = control;
    try {
      attn->forward(x, ctx_states, ctx);
      ADD_FAILURE() << "bad K/V accepted";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("test.attn2"), std::string::npos) << e.what();
    }
  }
}

// Reduced precision: fp32 softmax, so bf16 stays close to fp32.
TEST(AttentionLayer, Bf16CloseToFp32) {
  at::manual_seed(2);
  AttentionOptions o = cross_options();
  o.cross_attention_dim = 0;  // self-attention
  Attention attn(o, ParamInit{});
  const at::Tensor x = at::randn({2, 64, 24});
  at::NoGradGuard no_grad;
  const at::Tensor ref = attn->forward(x, at::Tensor(), AttentionContext{});
  attn->to(at::kBFloat16);
  const at::Tensor out = attn->forward(x.to(at::kBFloat16), at::Tensor(), AttentionContext{});
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LE(max_abs_error(out, ref), 0.03 * testing::max_abs(ref));
}

// ---- the seam in the UNet ----

struct Call {
  std::string layer;
  bool cross;
  int64_t step;
  std::vector<Branch> branches;
  std::vector<int64_t> q_shape, k_shape;
};

class RecordingControl : public AttentionControl {
 public:
  std::pair<at::Tensor, at::Tensor> keys_values(const AttentionSite& site, const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v) override {
    calls.push_back({site.layer, site.cross, site.ctx.step, site.ctx.branches, q.sizes().vec(), k.sizes().vec()});
    return {k, v};
  }
  std::vector<Call> calls;
};

// Self-attention K/V extended with another frame's (the batch reversed):
// more tokens than the layer's own, as gather/swap produce.
class ExtendSelfControl : public AttentionControl {
 public:
  std::pair<at::Tensor, at::Tensor> keys_values(const AttentionSite& site, const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v) override {
    if (site.cross) return {k, v};
    return {at::cat({k, k.flip(0)}, 1), at::cat({v, v.flip(0)}, 1)};
  }
};

// Keeps the first few tokens only: fewer than the layer's own.
class TruncateControl : public AttentionControl {
 public:
  std::pair<at::Tensor, at::Tensor> keys_values(const AttentionSite&, const at::Tensor&, const at::Tensor& k,
                                                const at::Tensor& v) override {
    return {k.narrow(1, 0, 5), v.narrow(1, 0, 5)};
  }
};

class UNetSeam : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    unet_ = new UNet2DConditionModel(
        load_component<UNet2DConditionModel>(reference_data() + "/tiny_ip2p/unet", at::kFloat, at::kCPU));
  }
  static void TearDownTestSuite() {
    delete unet_;
    unet_ = nullptr;
  }
  at::Tensor run(AttentionControl* control, int64_t step = -1, std::vector<Branch> branches = {}) {
    AttentionContext ctx;
    ctx.control = control;
    ctx.step = step;
    ctx.branches = std::move(branches);
    at::NoGradGuard no_grad;
    return (*unet_)->forward(sample_, timestep_, context_, ctx);
  }
  static UNet2DConditionModel* unet_;
  at::Tensor sample_ = golden("unet.safetensors", "sample");  // [3, 8, 8, 12]
  at::Tensor timestep_ = golden("unet.safetensors", "timestep");
  at::Tensor context_ = golden("unet.safetensors", "encoder_hidden_states");  // [3, 77, 32]
};
UNet2DConditionModel* UNetSeam::unet_ = nullptr;

TEST_F(UNetSeam, RecordingControlSeesEveryLayerInOrder) {
  RecordingControl rec;
  const std::vector<Branch> branches{Branch::TextImage, Branch::Image, Branch::Uncond};
  run(&rec, 7, branches);

  // The tiny model: CrossAttnDownBlock2D (2 layers), DownBlock2D, the mid
  // block, UpBlock2D, CrossAttnUpBlock2D (3 layers); one transformer block each.
  std::vector<std::string> expected_transformers = {"down_blocks.0.attentions.0", "down_blocks.0.attentions.1",
                                                    "mid_block.attentions.0", "up_blocks.1.attentions.0",
                                                    "up_blocks.1.attentions.1", "up_blocks.1.attentions.2"};
  ASSERT_EQ(rec.calls.size(), 2 * expected_transformers.size());
  const auto& layers = (*unet_)->attention_layers();
  ASSERT_EQ(layers.size(), rec.calls.size());
  const auto params = (*unet_)->named_parameters();
  for (size_t i = 0; i < rec.calls.size(); ++i) {
    const Call& c = rec.calls[i];
    const bool cross = i % 2 == 1;
    const std::string name = expected_transformers[i / 2] + ".transformer_blocks.0." + (cross ? "attn2" : "attn1");
    EXPECT_EQ(c.layer, name);
    EXPECT_EQ(layers[i]->name(), name);
    EXPECT_NE(params.find(name + ".to_q.weight"), nullptr) << name;  // the name is the checkpoint path
    EXPECT_EQ(c.cross, cross) << name;
    EXPECT_EQ(c.step, 7);
    EXPECT_EQ(c.branches, branches);
    const int64_t tokens = name.rfind("mid_block", 0) == 0 ? 4 * 6 : 8 * 12;
    EXPECT_EQ(c.q_shape, (std::vector<int64_t>{3, tokens, 32})) << name;
    EXPECT_EQ(c.k_shape, (std::vector<int64_t>{3, cross ? 77 : tokens, 32})) << name;
  }
}

TEST_F(UNetSeam, OwnKeysValuesReproduceNullControlExactly) {
  RecordingControl identity;
  const at::Tensor with = run(&identity, 0, {Branch::TextImage, Branch::Image, Branch::Uncond});
  const at::Tensor without = run(nullptr);
  EXPECT_TRUE(at::equal(with, without));
  EXPECT_LE(max_abs_error(without, golden("unet.safetensors", "output")), 1e-4);
}

TEST_F(UNetSeam, OtherTokenCountsWorkAndChangeTheOutput) {
  const at::Tensor base = run(nullptr);
  ExtendSelfControl extend;
  const at::Tensor extended = run(&extend);
  TruncateControl truncate;
  const at::Tensor truncated = run(&truncate);
  for (const at::Tensor* out : {&extended, &truncated}) {
    EXPECT_EQ(out->sizes(), base.sizes());
    EXPECT_TRUE(at::isfinite(*out).all().item<bool>());
    EXPECT_GT(max_abs_error(*out, base), 1e-3);
  }
}

TEST_F(UNetSeam, BranchesMustDivideTheBatch) {
  RecordingControl rec;
  EXPECT_THROW(run(&rec, 0, {Branch::TextImage, Branch::Image}), c10::Error);
}

// Every attention layer of the full-size UNet is enumerated with its
// checkpoint path: exactly the attn1/attn2 modules of the reference's list.
TEST(UNetAttentionLayers, FullSizeNamesAreCheckpointPaths) {
  UNet2DConditionModel unet(UNetConfig::from_file(reference_data() + "/full_size/unet_config.json"),
                            ParamInit{ParamInit::Fill::ShapeOnly});
  std::set<std::string> reference;
  for (const std::string& line : testing::read_param_lines(reference_data() + "/full_size/unet_params.txt")) {
    const std::string name = line.substr(0, line.find(' '));
    for (const char* leaf : {".attn1.to_q.weight", ".attn2.to_q.weight"}) {
      const size_t at = name.find(leaf);
      if (at != std::string::npos && at + std::string(leaf).size() == name.size())
        reference.insert(name.substr(0, at + 6));
    }
  }
  std::set<std::string> ours;
  for (const auto& layer : unet->attention_layers()) EXPECT_TRUE(ours.insert(layer->name()).second) << layer->name();
  EXPECT_EQ(ours, reference);
  EXPECT_EQ(ours.size(), 32u);
  EXPECT_EQ(unet->attention_layers().front()->name(), "down_blocks.0.attentions.0.transformer_blocks.0.attn1");
  EXPECT_EQ(unet->attention_layers().back()->name(), "up_blocks.3.attentions.2.transformer_blocks.0.attn2");
}

}  // namespace
}  // namespace via::model
