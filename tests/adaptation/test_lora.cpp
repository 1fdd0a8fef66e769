// LoRA adapter on the tiny reference model: names and shapes, seeded
// initialisation, a fresh adapter changes nothing, detach restores the base
// output exactly, and bad input is refused without changing the adapter.
#include "adaptation/lora.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "model/pipeline.h"
#include "tests/support/lora.h"
#include "tests/support/tiny_model.h"

using namespace via;
using via::adapt::LoraAdapter;
using via::adapt::LoraOptions;

namespace {

using test::tiny_model;
using test::tiny_model_dir;
using test::bit_equal;
using test::edit_latents;
using test::random_weights;
using test::test_image;
using test::tiny_unet;

}  // namespace

TEST(Lora, NamesShapesAndInit) {
  auto& unet = tiny_unet();
  const LoraAdapter adapter(unet, LoraOptions{});
  const auto named = adapter.named_tensors();
  const auto& layers = unet.attention_layers();
  ASSERT_FALSE(layers.empty());
  EXPECT_EQ(named.size(), layers.size() * 4 * 2);
  for (const auto& attn : layers) {
    const auto& o = attn->options();
    const int64_t inner = o.heads * o.dim_head;
    const int64_t kv = o.cross_attention_dim > 0 ? o.cross_attention_dim : o.query_dim;
    const std::string base = attn->name();
    EXPECT_EQ(named.at(base + ".to_q.lora_A").sizes(), (at::IntArrayRef{4, o.query_dim}));
    EXPECT_EQ(named.at(base + ".to_q.lora_B").sizes(), (at::IntArrayRef{inner, 4}));
    EXPECT_EQ(named.at(base + ".to_k.lora_A").sizes(), (at::IntArrayRef{4, kv}));
    EXPECT_EQ(named.at(base + ".to_v.lora_B").sizes(), (at::IntArrayRef{inner, 4}));
    EXPECT_EQ(named.at(base + ".to_out.0.lora_A").sizes(), (at::IntArrayRef{4, inner}));
    EXPECT_EQ(named.at(base + ".to_out.0.lora_B").sizes(), (at::IntArrayRef{o.query_dim, 4}));
    // A within the Kaiming-uniform bound and not all zero; B exactly zero.
    const at::Tensor a = named.at(base + ".to_q.lora_A");
    EXPECT_LE(a.abs().max().item<double>(), 1.0 / std::sqrt(static_cast<double>(o.query_dim)));
    EXPECT_GT(a.abs().max().item<double>(), 0.0);
    EXPECT_EQ(named.at(base + ".to_q.lora_B").abs().max().item<double>(), 0.0);
  }
  for (const auto& [name, t] : named) {
    EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(t.requires_grad()) << name;
  }
  EXPECT_EQ(adapter.parameters().size(), named.size());
  EXPECT_DOUBLE_EQ(adapter.scale(), 1.0);  // alpha defaults to the rank
}

TEST(Lora, SeededInitIsReproducible) {
  auto& unet = tiny_unet();
  LoraOptions o;
  o.seed = 11;
  const LoraAdapter a(unet, o), b(unet, o);
  o.seed = 12;
  const LoraAdapter c(unet, o);
  const auto na = a.named_tensors(), nb = b.named_tensors(), nc = c.named_tensors();
  bool any_differs = false;
  for (const auto& [name, t] : na) {
    EXPECT_TRUE(bit_equal(t, nb.at(name))) << name;
    if (name.find("lora_A") != std::string::npos) any_differs |= !at::equal(t, nc.at(name));
  }
  EXPECT_TRUE(any_differs);
}

TEST(Lora, TargetsAndRankOptions) {
  auto& unet = tiny_unet();
  LoraOptions o;
  o.rank = 2;
  o.alpha = 8;
  o.targets = {"to_v"};
  const LoraAdapter adapter(unet, o);
  const auto named = adapter.named_tensors();
  EXPECT_EQ(named.size(), unet.attention_layers().size() * 2);
  for (const auto& [name, t] : named) {
    EXPECT_NE(name.find(".to_v.lora_"), std::string::npos) << name;
    EXPECT_TRUE(t.size(0) == 2 || t.size(1) == 2) << name;
  }
  EXPECT_DOUBLE_EQ(adapter.scale(), 4.0);
  o.targets = {"to_x"};
  EXPECT_THROW(LoraAdapter(unet, o), std::invalid_argument);
  o.targets = {"to_q"};
  o.rank = 0;
  EXPECT_THROW(LoraAdapter(unet, o), std::invalid_argument);
}

TEST(Lora, FreshAdapterChangesNothingAndDetachRestoresBase) {
  auto& unet = tiny_unet();
  const at::Tensor base = edit_latents();
  LoraAdapter adapter(unet, LoraOptions{});
  {
    adapt::ScopedLora scoped(adapter, unet);
    EXPECT_TRUE(adapter.attached_to(unet));
    EXPECT_TRUE(bit_equal(edit_latents(), base)) << "B = 0 must add exactly nothing";
    adapter.load_named(random_weights(adapter, 3));
    const at::Tensor adapted = edit_latents();
    EXPECT_GT((adapted - base).abs().max().item<double>(), 1e-3) << "a non-zero adapter must change the edit";
  }
  EXPECT_FALSE(adapter.attached_to(unet));
  for (const auto& attn : unet.attention_layers()) EXPECT_EQ(attn->adapter(), nullptr) << attn->name();
  EXPECT_TRUE(bit_equal(edit_latents(), base)) << "detaching must restore the base output exactly";
}

TEST(Lora, LoadNamedRefusesMismatchesAndChangesNothing) {
  auto& unet = tiny_unet();
  LoraAdapter adapter(unet, LoraOptions{});
  std::map<std::string, at::Tensor> before;
  for (const auto& [name, t] : adapter.named_tensors()) before.emplace(name, t.detach().clone());

  auto good = random_weights(adapter, 1);
  auto missing = good;
  missing.erase(missing.begin());
  EXPECT_THROW(adapter.load_named(missing), std::invalid_argument);
  auto extra = good;
  extra.emplace("mid_block.attentions.0.transformer_blocks.0.attn9.to_q.lora_A", at::zeros({4, 32}));
  EXPECT_THROW(adapter.load_named(extra), std::invalid_argument);
  auto misshaped = good;
  misshaped.begin()->second = at::zeros({3, 3});
  try {
    adapter.load_named(misshaped);
    ADD_FAILURE() << "a mis-shaped tensor was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(misshaped.begin()->first), std::string::npos) << e.what();
  }
  for (const auto& [name, t] : adapter.named_tensors()) EXPECT_TRUE(bit_equal(t, before.at(name))) << name;

  // Loading keeps the adapter's own tensors (an optimizer holding them sees the new values).
  const at::Tensor first = adapter.parameters().front();
  adapter.load_named(good);
  EXPECT_TRUE(first.is_same(adapter.parameters().front()));
  for (const auto& [name, t] : adapter.named_tensors()) EXPECT_TRUE(bit_equal(t.detach(), good.at(name))) << name;
}

TEST(Lora, AttachRefusesAnotherArchitecture) {
  auto& unet = tiny_unet();
  LoraAdapter adapter(unet, LoraOptions{});
  // A UNet of the same block layout but other widths.
  model::UNetConfig config = unet.config();
  config.block_out_channels = {16, 16};
  config.norm_num_groups = 4;
  model::UNet2DConditionModelImpl other(config);
  EXPECT_THROW(adapter.attach(other), std::invalid_argument);
  for (const auto& attn : other.attention_layers()) EXPECT_EQ(attn->adapter(), nullptr);
}
