// Which CPU ops give different bits for different intra-op thread counts
// (at::set_num_threads), at the shapes of the tiny test model and of a
// small real one. Each op runs on the same inputs with 1 thread and with N;
// the table gives how many output elements differ and the largest
// difference, and the time per call with each count. A measurement, not a
// test: `via_thread_determinism [N=2] [--no-mkldnn]`.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

// OpenBLAS (Debian's libtorch uses it for GEMMs) keeps its own thread count.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace {

using Outputs = std::vector<at::Tensor>;

struct Case {
  std::string name;
  std::function<Outputs()> run;  // deterministic inputs inside (seeded)
};

at::Tensor rnd(std::vector<int64_t> shape, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

// Output tensors and (for grad cases) input grads of one call.
Outputs grads_of(const at::Tensor& out, const std::vector<at::Tensor>& leaves) {
  out.sum().backward();  // the sum's grad is all ones: its own order is irrelevant
  Outputs r{out.detach().clone()};
  for (const auto& l : leaves) r.push_back(l.grad().clone());
  return r;
}

double seconds_per_call(const Case& c, int threads) {
  at::set_num_threads(threads);
  c.run();
  int n = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    c.run();
    ++n;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < 0.3 && n < 50);
  return elapsed / n;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  bool conv_cost = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--conv-cost") == 0) {
      conv_cost = true;
      continue;
    }
    if (std::strcmp(argv[i], "--no-mkldnn") == 0) at::globalContext().setUserEnabledMkldnn(false);
    else if (std::strcmp(argv[i], "--blas-1") == 0 && openblas_set_num_threads) openblas_set_num_threads(1);
    else threads = std::atoi(argv[i]);
  }
  if (conv_cost) {
    // The price of the thread-count-independent convolution (ATen's own, oneDNN off): forward
    // time per call with oneDNN on and off, at the tiny model's shapes and Stable Diffusion's at 256 px.
    std::printf("%-34s %12s %12s  (%d threads)\n", "conv3x3 forward N x C x H x W", "oneDNN ms", "ATen ms", threads);
    for (auto [n, c, h, w] : std::vector<std::array<int64_t, 4>>{{6, 32, 16, 12}, {1, 32, 128, 96}, {3, 320, 32, 32},
                                                                 {3, 640, 16, 16}, {3, 1280, 8, 8}, {1, 512, 32, 32},
                                                                 {1, 256, 128, 128}, {1, 128, 256, 256}}) {
      const Case k{"", [=] { return Outputs{at::conv2d(rnd({n, c, h, w}, 1), rnd({c, c, 3, 3}, 2), rnd({c}, 3), 1, 1)}; }};
      at::globalContext().setUserEnabledMkldnn(true);
      const double on = seconds_per_call(k, threads);
      at::globalContext().setUserEnabledMkldnn(false);
      const double off = seconds_per_call(k, threads);
      std::printf("%-34s %12.2f %12.2f\n", (std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w)).c_str(), 1e3 * on, 1e3 * off);
    }
    std::printf("%-34s %12s %12s  (%d threads)\n", "conv1x1 forward N x C x H x W", "oneDNN ms", "ATen ms", threads);
    for (auto [n, c, h, w] : std::vector<std::array<int64_t, 4>>{{1, 32, 32, 24}, {1, 32, 128, 96}, {3, 320, 32, 32},
                                                                 {1, 512, 32, 32}, {1, 256, 128, 128}}) {
      const Case dnn{"", [=] { return Outputs{at::conv2d(rnd({n, c, h, w}, 1), rnd({c, c, 1, 1}, 2), rnd({c}, 3))}; }};
      const Case aten{"", [=] { return Outputs{at::thnn_conv2d(rnd({n, c, h, w}, 1), rnd({c, c, 1, 1}, 2), {1, 1}, rnd({c}, 3), {1, 1}, {0, 0})}; }};
      at::globalContext().setUserEnabledMkldnn(true);
      const double on = seconds_per_call(dnn, threads), off = seconds_per_call(aten, threads);
      std::printf("%-34s %12.2f %12.2f\n", (std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w)).c_str(), 1e3 * on, 1e3 * off);
    }
    return 0;
  }
  std::vector<Case> cases;
  // conv: the tiny UNet (3 CFG branches x 2 frames, 32 channels at 16x12) and a VAE-sized one.
  for (auto [n, c, h, w] : std::vector<std::array<int64_t, 4>>{{6, 32, 16, 12}, {1, 32, 128, 96}, {2, 128, 64, 64}}) {
    const std::string shape = std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
    cases.push_back({"conv3x3 fwd " + shape, [=] {
                       return Outputs{at::conv2d(rnd({n, c, h, w}, 1), rnd({c, c, 3, 3}, 2), rnd({c}, 3), 1, 1)};
                     }});
    cases.push_back({"conv3x3 fwd+bwd " + shape, [=] {
                       auto x = rnd({n, c, h, w}, 1).requires_grad_();
                       auto wt = rnd({c, c, 3, 3}, 2).requires_grad_();
                       auto b = rnd({c}, 3).requires_grad_();
                       return grads_of(at::conv2d(x, wt, b, 1, 1), {x, wt, b});
                     }});
  }
  // linear / attention: tokens x channels of the tiny UNet and of SD's first level (at 256 px).
  for (auto [t, c] : std::vector<std::array<int64_t, 2>>{{6 * 192, 32}, {2 * 1024, 320}}) {
    const std::string shape = std::to_string(t) + "x" + std::to_string(c);
    cases.push_back({"linear fwd " + shape, [=] { return Outputs{at::linear(rnd({t, c}, 4), rnd({c, c}, 5), rnd({c}, 6))}; }});
    cases.push_back({"linear fwd+bwd " + shape, [=] {
                       auto x = rnd({t, c}, 4).requires_grad_();
                       auto wt = rnd({c, c}, 5).requires_grad_();
                       auto b = rnd({c}, 6).requires_grad_();
                       return grads_of(at::linear(x, wt, b), {x, wt, b});
                     }});
  }
  for (auto [b, t, d] : std::vector<std::array<int64_t, 3>>{{24, 192, 8}, {16, 1024, 40}}) {
    const std::string shape = std::to_string(b) + "x" + std::to_string(t) + "x" + std::to_string(d);
    cases.push_back({"attention (baddbmm, softmax, bmm) " + shape, [=] {
                       auto q = rnd({b, t, d}, 7), k = rnd({b, 3 * t, d}, 8), v = rnd({b, 3 * t, d}, 9);
                       auto s = at::baddbmm(at::empty({b, t, 3 * t}), q, k.transpose(1, 2), 0.0, 0.125);
                       return Outputs{at::bmm(at::softmax(s, -1), v)};
                     }});
  }
  cases.push_back({"group_norm fwd+bwd 6x32x16x12 g8", [] {
                     auto x = rnd({6, 32, 16, 12}, 10).requires_grad_();
                     auto g = rnd({32}, 11).requires_grad_(), b = rnd({32}, 12).requires_grad_();
                     return grads_of(at::group_norm(x, 8, g, b, 1e-6), {x, g, b});
                   }});
  cases.push_back({"group_norm fwd 1x128x256x256 g32", [] {
                     return Outputs{at::group_norm(rnd({1, 128, 256, 256}, 10), 32, rnd({128}, 11), rnd({128}, 12), 1e-6)};
                   }});
  // The text encoder (2 prompts x 77 tokens) and the VAE's own shapes.
  for (int64_t c : {32, 768}) {
    const std::string shape = "2x77x" + std::to_string(c);
    cases.push_back({"layer_norm fwd " + shape, [=] { return Outputs{at::layer_norm(rnd({2, 77, c}, 13), {c}, rnd({c}, 14), rnd({c}, 15), 1e-5)}; }});
    cases.push_back({"text attention (matmul 4D, softmax) " + shape, [=] {
                       const int64_t h = c / 32 > 0 ? c / 64 + 1 : 1;
                       auto q = rnd({2, h, 77, 32}, 24), k = rnd({2, h, 77, 32}, 25);
                       return Outputs{at::matmul(at::softmax(at::matmul(q, k.transpose(-1, -2)), -1), k)};
                     }});
  }
  for (auto [c, h, w, g] : std::vector<std::array<int64_t, 4>>{{32, 128, 96, 8}, {32, 32, 24, 8}, {512, 64, 64, 32}}) {
    const std::string shape = "1x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
    cases.push_back({"group_norm fwd " + shape, [=] {
                       return Outputs{at::group_norm(rnd({1, c, h, w}, 26), g, rnd({c}, 27), rnd({c}, 28), 1e-6)};
                     }});
  }
  cases.push_back({"conv 3->32 fwd 1x3x128x96; stride-2 32->32", [] {
                     auto x = at::conv2d(rnd({1, 3, 128, 96}, 29), rnd({32, 3, 3, 3}, 30), rnd({32}, 31), std::vector<int64_t>{1, 1}, std::vector<int64_t>{1, 1});
                     return Outputs{x, at::conv2d(x, rnd({32, 32, 3, 3}, 32), rnd({32}, 33), std::vector<int64_t>{2, 2}, std::vector<int64_t>{0, 0})};
                   }});
  cases.push_back({"conv 1x1 fwd 1x32x32x24; 6x8x16x12 -> 32", [] {
                     return Outputs{at::conv2d(rnd({1, 32, 32, 24}, 34), rnd({32, 32, 1, 1}, 35), rnd({32}, 36)),
                                    at::conv2d(rnd({6, 8, 16, 12}, 37), rnd({32, 8, 3, 3}, 38), rnd({32}, 39), 1, 1)};
                   }});
  cases.push_back({"thnn_conv2d 1x1 fwd 1x32x32x24; 3x3 fwd+bwd 1x32x128x96", [] {
                     auto x = rnd({1, 32, 128, 96}, 1).requires_grad_();
                     auto wt = rnd({32, 32, 3, 3}, 2).requires_grad_();
                     Outputs r{at::thnn_conv2d(rnd({1, 32, 32, 24}, 34), rnd({32, 32, 1, 1}, 35), {1, 1}, rnd({32}, 36), {1, 1}, {0, 0})};
                     for (auto& t : grads_of(at::thnn_conv2d(x, wt, {3, 3}, {}, {1, 1}, {1, 1}), {x, wt})) r.push_back(t);
                     return r;
                   }});
  cases.push_back({"mm 32x32 @ 32x768; 768x32 @ 32x32; 320x320 @ 320x4096", [] {
                     return Outputs{at::mm(rnd({32, 32}, 40), rnd({32, 768}, 41)), at::mm(rnd({768, 32}, 42), rnd({32, 32}, 43)),
                                    at::mm(rnd({320, 320}, 44), rnd({320, 4096}, 45))};
                   }});
  cases.push_back({"layer_norm fwd+bwd 1152x32", [] {
                     auto x = rnd({1152, 32}, 13).requires_grad_();
                     auto g = rnd({32}, 14).requires_grad_(), b = rnd({32}, 15).requires_grad_();
                     return grads_of(at::layer_norm(x, {32}, g, b, 1e-5), {x, g, b});
                   }});
  cases.push_back({"gelu, silu 6x32x16x12", [] {
                     auto x = rnd({6, 32, 16, 12}, 16);
                     return Outputs{at::gelu(x), at::silu(x)};
                   }});
  cases.push_back({"sum/mean to a scalar (mse_loss, norms) 400003", [] {
                     auto x = rnd({400003}, 17);
                     return Outputs{x.sum(), x.mean(), at::mse_loss(x, rnd({400003}, 18)), at::norm(x)};
                   }});
  cases.push_back({"sum over dim 0 (bias grads) 1152x32", [] { return Outputs{rnd({1152, 32}, 19).sum(0)}; }});
  cases.push_back({"elementwise a+alpha*b, lerp, addcmul, addcdiv 400003", [] {
                     auto a = rnd({400003}, 20), b = rnd({400003}, 21), c = rnd({400003}, 22).abs() + 1;
                     return Outputs{at::add(a, b, 0.37), at::lerp(a, b, 0.1), at::addcmul(a, b, c, 0.3), at::addcdiv(a, b, c, 0.3)};
                   }});
  cases.push_back({"upsample nearest 2x 6x32x8x6", [] { return Outputs{at::upsample_nearest2d(rnd({6, 32, 8, 6}, 23), {16, 12})}; }});

  std::printf("%-46s %-40s %10s %9s %9s\n", "op", "differing per output", "max |diff|", "1 thr ms", (std::to_string(threads) + " thr ms").c_str());
  for (const Case& c : cases) {
    at::set_num_threads(1);
    const Outputs one = c.run();
    at::set_num_threads(threads);
    const Outputs many = c.run();
    // Per output (for fwd+bwd: the output, then each input's grad), differing/total.
    std::string differing;
    double max_diff = 0;
    for (size_t i = 0; i < one.size(); ++i) {
      differing += (i ? " " : "") + std::to_string(at::ne(one[i], many[i]).sum().item<int64_t>()) + "/" +
                   std::to_string(one[i].numel());
      max_diff = std::max(max_diff, (one[i] - many[i]).abs().max().item<double>());
    }
    std::printf("%-46s %-40s %10.3g %9.3f %9.3f\n", c.name.c_str(), differing.c_str(), max_diff,
                1e3 * seconds_per_call(c, 1), 1e3 * seconds_per_call(c, threads));
  }
  return 0;
}
