// The per-step loops of seqvision's hand-written LSTM and GRU training passes (models/cells.py,
// models/gru_sequence.py), compiled on the user's machine by models/fused.py.
//
// The Python loops run the same arithmetic as ten to fifteen small ATen operations per step, each a pass over
// the step's tensors and each paying Python's and the dispatcher's overhead; for a batch of 64 that overhead and
// memory traffic cost more than the matrix products. Here each step's elementwise work is one loop that reads
// its inputs once (vectorised, with glibc's vector expf and tanhf under -ffast-math), and the matrix products
// stay ATen's. Buffers, layouts and what is saved for the backward pass are those of the Python loops, which
// stay the reference the tests compare against. float32 only; the callers keep the Python loops for the rest.
// Inference (no gradients) runs the same forward loops without saving anything for a backward pass; its
// reference is the readable cells (LSTM) and nn.GRU's own forward (GRU).

#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <torch/extension.h>

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float logistic(float x) { return 1.0f / (1.0f + expf(-x)); }

// The elementwise loops of a step are split across ATen's threads in whole vectors of 16 floats: every split
// then sends the same elements through the vector and the scalar code, so the results do not depend on the
// number of threads. Below kSerialElements a step stays on one thread, where waking the others costs more.
constexpr int64_t kVector = 16;
constexpr int64_t kSerialElements = 4096;

template <typename Body>
void in_parallel(int64_t n, const Body& body) {
  const int64_t vectors = (n + kVector - 1) / kVector;
  at::parallel_for(0, vectors, kSerialElements / kVector, [&](int64_t first, int64_t last) {
    body(first * kVector, std::min(last * kVector, n));
  });
}

// The GRU's loops run row by row of the batch (its layouts are nn.GRU's (B, 3H)); they split by whole rows.
template <typename Body>
void in_rows(int64_t rows, int64_t row_size, const Body& body) {
  at::parallel_for(0, rows, std::max<int64_t>(1, kSerialElements / row_size), body);
}

void check_float(const at::Tensor& tensor, const char* name) {
  TORCH_CHECK(tensor.scalar_type() == at::kFloat && tensor.is_contiguous() && tensor.device().is_cpu(), name,
              " must be a contiguous float32 CPU tensor");
}

// The GRU's recurrent products in bfloat16 (under bf16 autocast): bf16 x bf16 with float32 accumulation, through
// ATen's batch-reduce GEMM, which runs them on AMX tiles or AVX-512 BF16 with the right operand packed once per
// pass: made for small products like the GRU's (128 x 128 x 384), where it shortened the step (docs/benchmarks.md).
// The packed operand is cut into column blocks of kProductBlock; sizes that are not multiples keep float32. (Its
// other products, the input projection and the weight gradients, are product_bf16_f32's.)
constexpr int64_t kProductBlock = 64;

// The GRU's input projection is made a few steps at a time, into a buffer of at most this many floats (4 MiB).
// Made for the whole sequence at once, a batch of 1,000 needed a new 43 MB buffer for every call, and the page
// faults of its first writes took most of the inference time (benchmarks/gru_speed.py).
constexpr int64_t kProjectionElements = int64_t{1} << 20;

bool bf16_products_available(int64_t size) {
  return size % kProductBlock == 0 && at::native::cpublas::could_pack(at::kBFloat16);
}

// matrix (K, N), any strides -> its bf16 copy packed for brgemm, (N / kProductBlock, K, kProductBlock)
at::Tensor packed_bf16(const at::Tensor& matrix) {
  const int64_t k = matrix.size(0), n = matrix.size(1);
  TORCH_CHECK(n % kProductBlock == 0 && at::native::cpublas::could_pack(at::kBFloat16), "bf16 products need a ",
              "hidden size divisible by ", kProductBlock, " and a CPU with AVX-512 BF16 or AMX");
  const auto source = matrix.to(at::kBFloat16).contiguous();
  auto packed = at::empty({n / kProductBlock, k, kProductBlock}, source.options());
  for (int64_t block = 0; block < n / kProductBlock; ++block) {
    at::native::cpublas::pack(k, kProductBlock, n, kProductBlock, at::kBFloat16, at::kBFloat16,
                              source.data_ptr<at::BFloat16>() + block * kProductBlock,
                              packed.data_ptr<at::BFloat16>() + block * k * kProductBlock);
  }
  return packed;
}

// values -> their bfloat16 bits, rounded to nearest even as ATen's conversion rounds (NaN stays a NaN): written by
// the loops beside the float32 values they make, where a separate conversion would read them back afterwards.
inline uint16_t bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return 0x7fc0;
  }
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void write_bf16(const float* __restrict values, at::BFloat16* out, int64_t n) {
  uint16_t* __restrict bits = reinterpret_cast<uint16_t*>(out);
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    bits[k] = bf16_bits(values[k]);
  }
}

// out (M, N) with row stride out_stride: out = (or, accumulating, +=) left (M, K), contiguous bf16, times the
// packed (K, N). The left operand is a pointer into the loops' buffers, which spares a tensor view at every step.
void product_bf16(const at::BFloat16* left, int64_t m, const at::Tensor& packed, float* out, int64_t out_stride,
                  bool accumulate) {
  const int64_t k = packed.size(1);
  for (int64_t block = 0; block < packed.size(0); ++block) {
    at::native::cpublas::brgemm(m, kProductBlock, k, k, kProductBlock, out_stride, accumulate, left,
                                packed.data_ptr<at::BFloat16>() + block * k * kProductBlock,
                                out + block * kProductBlock);
  }
}

}  // namespace

// MKL's bf16 x bf16 GEMM with float32 results, which x86 builds of libtorch_cpu export: weak, so that where it is
// missing the library still loads, with a null pointer here.
extern "C" void cblas_gemm_bf16bf16f32(int layout, int transa, int transb, int m, int n, int k, float alpha,
                                       const at::BFloat16* a, int lda, const at::BFloat16* b, int ldb, float beta,
                                       float* c, int ldc) __attribute__((weak));

namespace {

constexpr int kRowMajor = 101, kNoTranspose = 111, kTranspose = 112;  // CBLAS's enumerations

// How CBLAS reads a row-major matrix view: as stored (unit column stride) or transposed (unit row stride), and its
// leading dimension; false for any other layout.
bool cblas_layout(const at::Tensor& matrix, int* transpose, int* leading) {
  const int64_t rows = matrix.size(0), columns = matrix.size(1);
  if (matrix.stride(1) == 1 && matrix.stride(0) >= std::max<int64_t>(1, columns) && matrix.stride(0) <= INT32_MAX) {
    *transpose = kNoTranspose;
    *leading = static_cast<int>(matrix.stride(0));
    return true;
  }
  if (matrix.stride(0) == 1 && matrix.stride(1) >= std::max<int64_t>(1, rows) && matrix.stride(1) <= INT32_MAX) {
    *transpose = kTranspose;
    *leading = static_cast<int>(matrix.stride(1));
    return true;
  }
  return false;
}

// out (M, N), a float32 view with unit column stride = left (M, K) times right (K, N), bf16 views stored either way,
// summed in float32: the GRU's products from bf16 operands that ATen's bf16 mm would round to bf16 (the input
// projection and the weight gradients). Without MKL the same products run in float32 on the operands widened.
void product_bf16_f32(const at::Tensor& left, const at::Tensor& right, at::Tensor out, bool allow_mkl) {
  const int64_t m = left.size(0), k = left.size(1), n = right.size(1);
  int transpose_left = 0, transpose_right = 0, left_leading = 0, right_leading = 0;
  const bool fits = m > 0 && n > 0 && k > 0 && std::max({m, n, k}) <= INT32_MAX && out.stride(1) == 1 &&
                    out.stride(0) >= n && out.stride(0) <= INT32_MAX &&
                    cblas_layout(left, &transpose_left, &left_leading) &&
                    cblas_layout(right, &transpose_right, &right_leading);
  if (allow_mkl && cblas_gemm_bf16bf16f32 != nullptr && fits) {
    // MKL and ATen's brgemm may both run on AMX tiles, and ATen's keeps its tile configuration loaded between calls:
    // MKL run between two of them left them a configuration that did not fit, and the CPU raised an illegal
    // instruction. Released before and after, each loads its own.
    at::native::cpublas::brgemm_release();
    cblas_gemm_bf16bf16f32(kRowMajor, transpose_left, transpose_right, m, n, k, 1.0f, left.data_ptr<at::BFloat16>(),
                           left_leading, right.data_ptr<at::BFloat16>(), right_leading, 0.0f, out.data_ptr<float>(),
                           static_cast<int>(out.stride(0)));
    at::native::cpublas::brgemm_release();
    return;
  }
  at::mm_out(out, left.to(at::kFloat), right.to(at::kFloat));
}

// One LSTM step on n = H * B elements. Training (Saving) leaves the gates' activations in place of their
// pre-activations (i, f, g, o blocks) and fills the five factors of models/cells.py's gradient_factors;
// inference only reads the gates and writes the states.
template <bool Sigmoid, bool Saving>
void lstm_step(float* __restrict gates, const float* __restrict previous_cell, float* __restrict cell,
               float* __restrict hidden, float* __restrict factors, int64_t n, int64_t begin, int64_t end) {
  float* __restrict in = gates;
  float* __restrict forget = gates + n;
  float* __restrict candidate = gates + 2 * n;
  float* __restrict out = gates + 3 * n;
#pragma omp simd
  for (int64_t k = begin; k < end; ++k) {
    const float i = logistic(in[k]), f = logistic(forget[k]), o = logistic(out[k]);
    const float g = Sigmoid ? logistic(candidate[k]) : tanhf(candidate[k]);
    const float c = f * previous_cell[k] + i * g;
    const float s = Sigmoid ? logistic(c) : tanhf(c);
    cell[k] = c;
    hidden[k] = o * s;
    if constexpr (Saving) {
      in[k] = i;
      forget[k] = f;
      candidate[k] = g;
      out[k] = o;
      factors[k] = g * i * (1.0f - i);
      factors[n + k] = previous_cell[k] * f * (1.0f - f);
      factors[2 * n + k] = i * (Sigmoid ? g * (1.0f - g) : 1.0f - g * g);
      factors[3 * n + k] = s * o * (1.0f - o);
      factors[4 * n + k] = o * (Sigmoid ? s * (1.0f - s) : 1.0f - s * s);
    }
  }
}

// The forward recurrence over projected (T, 4H, B), which gets each step's recurrent product added in place.
// -> hiddens (T, H, B), factors (T, 5, H, B) when Saving (else an empty tensor), last cell state (H, B)
template <bool Saving>
std::vector<at::Tensor> lstm_recurrence(at::Tensor projected, const at::Tensor& weight_hh, bool sigmoid) {
  check_float(projected, "projected");
  check_float(weight_hh, "weight_hh");
  const int64_t steps = projected.size(0), batch = projected.size(2), size = weight_hh.size(1);
  const int64_t n = size * batch;
  auto hiddens = at::empty({steps, size, batch}, projected.options());
  auto factors = at::empty({Saving ? steps : 0, 5, size, batch}, projected.options());
  auto cells = at::zeros({2, size, batch}, projected.options());  // this step's and the one before, in turn
  float* gates_data = projected.data_ptr<float>();
  float* hiddens_data = hiddens.data_ptr<float>();
  float* factors_data = factors.data_ptr<float>();
  float* cells_data = cells.data_ptr<float>();
  for (int64_t step = 0; step < steps; ++step) {
    if (step > 0) {  // the first step starts from a zero hidden state
      projected[step].addmm_(weight_hh, hiddens[step - 1]);
    }
    const float* previous_cell = cells_data + ((step + 1) % 2) * n;
    float* cell = cells_data + (step % 2) * n;
    float* gates = gates_data + step * 4 * n;
    float* hidden = hiddens_data + step * n;
    float* step_factors = Saving ? factors_data + step * 5 * n : nullptr;
    in_parallel(n, [&](int64_t begin, int64_t end) {
      if (sigmoid) {
        lstm_step<true, Saving>(gates, previous_cell, cell, hidden, step_factors, n, begin, end);
      } else {
        lstm_step<false, Saving>(gates, previous_cell, cell, hidden, step_factors, n, begin, end);
      }
    });
  }
  return {hiddens, factors, cells[(steps - 1) % 2].clone()};
}

// One LSTM step back: the gate gradients from the hidden and cell gradients; the cell gradient goes on to the
// step before through the forget gate, unless this is the first step.
void lstm_step_backward(const float* __restrict grad_hidden, float* __restrict grad_cell,
                        const float* __restrict factors, const float* __restrict forget, float* __restrict grads,
                        int64_t n, bool to_previous_step, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t k = begin; k < end; ++k) {
    const float dh = grad_hidden[k];
    const float dc = grad_cell[k] + dh * factors[4 * n + k];
    grads[k] = factors[k] * dc;
    grads[n + k] = factors[n + k] * dc;
    grads[2 * n + k] = factors[2 * n + k] * dc;
    grads[3 * n + k] = dh * factors[3 * n + k];
    grad_cell[k] = to_previous_step ? dc * forget[k] : dc;
  }
}

}  // namespace

// models/cells.py's lstm_forward_loop. projected (T, 4H, B) is overwritten with the gates' activations.
// -> hiddens (T, H, B), factors (T, 5, H, B), last cell state (H, B)
std::vector<at::Tensor> lstm_forward(at::Tensor projected, const at::Tensor& weight_hh, bool sigmoid) {
  return lstm_recurrence<true>(projected, weight_hh, sigmoid);
}

// lstm_forward without what the backward pass needs: evaluation and serving. -> hiddens (T, H, B), last cell (H, B)
std::vector<at::Tensor> lstm_inference(at::Tensor projected, const at::Tensor& weight_hh, bool sigmoid) {
  auto results = lstm_recurrence<false>(projected, weight_hh, sigmoid);
  return {results[0], results[2]};
}

// models/cells.py's lstm_backward_loop. grad_outputs (T, H, B); grad_cell (H, B), the final cell state's
// gradient, used as the running cell gradient (so overwritten); the rest as lstm_forward left them.
// -> the gates' pre-activation gradients (T, 4H, B) and weight_hh's gradient (4H, H)
std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_outputs, at::Tensor grad_cell, const at::Tensor& weight_hh,
                                      const at::Tensor& gates, const at::Tensor& hiddens, const at::Tensor& factors) {
  for (const auto& [tensor, name] : {std::pair{&grad_outputs, "grad_outputs"}, {&grad_cell, "grad_cell"},
                                     {&weight_hh, "weight_hh"}, {&gates, "gates"}, {&hiddens, "hiddens"},
                                     {&factors, "factors"}}) {
    check_float(*tensor, name);
  }
  const int64_t steps = factors.size(0), size = factors.size(2), batch = factors.size(3);
  const int64_t n = size * batch;
  auto grad_gates = at::empty({steps, 4 * size, batch}, hiddens.options());
  auto grad_weight = at::zeros_like(weight_hh);
  auto recurrent = weight_hh.t().contiguous();  // a contiguous left operand makes the per-step product faster
  auto grad_hidden = grad_outputs[steps - 1].clone();
  for (int64_t step = steps - 1; step >= 0; --step) {
    auto step_grads = grad_gates[step];
    const float* dh = grad_hidden.data_ptr<float>();
    float* dc = grad_cell.data_ptr<float>();
    const float* step_factors = factors.data_ptr<float>() + step * 5 * n;
    const float* forget = gates.data_ptr<float>() + step * 4 * n + n;
    float* grads = step_grads.data_ptr<float>();
    in_parallel(n, [&](int64_t begin, int64_t end) {
      lstm_step_backward(dh, dc, step_factors, forget, grads, n, step > 0, begin, end);
    });
    if (step > 0) {  // the first step saw a zero hidden state
      grad_weight.addmm_(step_grads, hiddens[step - 1].t());
      at::addmm_out(grad_hidden, grad_outputs[step - 1], recurrent, step_grads);
    }
  }
  return {grad_gates, grad_weight};
}

// models/gru_sequence.py's GRUSequence.forward. sequences (T, B, F); weight_in (3H, F) and bias_in (3H) in
// (n, r, z) order; weight_hh (3H, H) and bias_hh (3H) in nn.GRU's (r, z, n) order.
// -> outputs (T, B, H), reset_update (T, B, 2H), to_candidate, to_update, to_reset (T, B, H), and with bf16 products
// the outputs in bf16 (T, B, H), the operands of weight_hh's gradient (else an empty tensor)
// The Python loop projects the input step by step; compiled, one product over a few steps is faster.
// Without Saving (inference) only the outputs are made; the other four come back empty.
template <bool Saving>
std::vector<at::Tensor> gru_recurrence(const at::Tensor& sequences, const at::Tensor& weight_in,
                                       const at::Tensor& bias_in, const at::Tensor& weight_hh,
                                       const at::Tensor& bias_hh, bool bf16_products) {
  for (const auto& [tensor, name] : {std::pair{&sequences, "sequences"}, {&weight_in, "weight_in"},
                                     {&bias_in, "bias_in"}, {&weight_hh, "weight_hh"}, {&bias_hh, "bias_hh"}}) {
    check_float(*tensor, name);
  }
  const int64_t steps = sequences.size(0), batch = sequences.size(1), size = weight_hh.size(1);
  const auto options = sequences.options();
  const int64_t saved_steps = Saving ? steps : 0;
  auto outputs = at::empty({steps, batch, size}, options);
  auto reset_update = at::empty({saved_steps, batch, 2 * size}, options);
  auto to_candidate = at::empty({saved_steps, batch, size}, options);
  auto to_update = at::empty({saved_steps, batch, size}, options);
  auto to_reset = at::empty({saved_steps, batch, size}, options);
  // (chunk B, 3H); the feature count is spelt out, as -1 cannot be inferred for an empty batch. Both products
  // leave out their bias, which the step's loop adds as it reads them: a bias in the product is a copy of it over
  // the whole output first (docs/benchmarks.md: the GRU).
  const auto inputs = sequences.reshape({steps * batch, sequences.size(2)});
  const int64_t chunk = std::max<int64_t>(1, kProjectionElements / std::max<int64_t>(1, batch * 3 * size));
  auto from_inputs = at::empty({std::min(chunk, steps) * batch, 3 * size}, options);
  auto from_hidden = at::zeros({batch, 3 * size}, options);  // the first step's: a zero hidden state
  const auto input_bias = bias_in.contiguous(), hidden_bias = bias_hh.contiguous();
  const float* __restrict bias_x = input_bias.data_ptr<float>();
  const float* __restrict bias_h = hidden_bias.data_ptr<float>();
  auto zero_state = at::zeros({batch, size}, options);  // read as step 0's previous state: no branch in the loop
  const auto packed_hh = bf16_products ? packed_bf16(weight_hh.t()) : at::Tensor();
  const auto inputs_bf16 = bf16_products ? inputs.to(at::kBFloat16) : at::Tensor();
  const auto weight_in_bf16 = bf16_products ? weight_in.to(at::kBFloat16) : at::Tensor();
  // Each step's output in bf16, the next step's operand; training keeps them all for weight_hh's gradient.
  auto outputs_bf16 = at::empty({bf16_products ? (Saving ? steps : 1) : 0, batch, size}, options.dtype(at::kBFloat16));
  for (int64_t step = 0; step < steps; ++step) {
    if (step % chunk == 0) {
      const int64_t rows = std::min(chunk, steps - step) * batch;
      auto chunk_out = from_inputs.narrow(0, 0, rows);
      if (bf16_products) {
        product_bf16_f32(inputs_bf16.narrow(0, step * batch, rows), weight_in_bf16.t(), chunk_out, true);
      } else {
        at::mm_out(chunk_out, inputs.narrow(0, step * batch, rows), weight_in.t());
      }
    }
    if (step > 0 && bf16_products) {
      product_bf16(outputs_bf16.data_ptr<at::BFloat16>() + (Saving ? step - 1 : 0) * batch * size, batch, packed_hh,
                   from_hidden.data_ptr<float>(), 3 * size, /*accumulate=*/false);
    } else if (step > 0) {
      at::mm_out(from_hidden, outputs[step - 1], weight_hh.t());
    }
    const float* input_part = from_inputs.data_ptr<float>() + (step % chunk) * batch * 3 * size;
    const float* hidden_part = from_hidden.data_ptr<float>();
    const float* previous =
        step > 0 ? outputs.data_ptr<float>() + (step - 1) * batch * size : zero_state.data_ptr<float>();
    float* hidden = outputs.data_ptr<float>() + step * batch * size;
    const int64_t saved = Saving ? step * batch : 0;
    float* gates = reset_update.data_ptr<float>() + saved * 2 * size;
    float* candidate_factor = to_candidate.data_ptr<float>() + saved * size;
    float* update_factor = to_update.data_ptr<float>() + saved * size;
    float* reset_factor = to_reset.data_ptr<float>() + saved * size;
    at::BFloat16* hidden_bf16 = bf16_products ? outputs_bf16.data_ptr<at::BFloat16>() + saved * size : nullptr;
    in_rows(batch, size, [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        const float* __restrict x = input_part + b * 3 * size;   // n, r, z
        const float* __restrict h = hidden_part + b * 3 * size;  // r, z, n
        const float* __restrict before = previous + b * size;
        float* __restrict row_gates = gates + b * 2 * size;
        const int64_t row = b * size;
#pragma omp simd
        for (int64_t j = 0; j < size; ++j) {
          const float r = logistic((x[size + j] + bias_x[size + j]) + (h[j] + bias_h[j]));
          const float z = logistic((x[2 * size + j] + bias_x[2 * size + j]) + (h[size + j] + bias_h[size + j]));
          const float hidden_n = h[2 * size + j] + bias_h[2 * size + j];
          const float n = tanhf((x[j] + bias_x[j]) + r * hidden_n);
          const float difference = before[j] - n;
          hidden[row + j] = n + z * difference;
          if constexpr (Saving) {
            row_gates[j] = r;
            row_gates[size + j] = z;
            candidate_factor[row + j] = (1.0f - z) * (1.0f - n * n);
            update_factor[row + j] = difference * z * (1.0f - z);
            reset_factor[row + j] = hidden_n * r * (1.0f - r);
          }
        }
        if (hidden_bf16 != nullptr) {
          write_bf16(hidden + row, hidden_bf16 + row, size);
        }
      }
    });
  }
  if (bf16_products) {
    at::native::cpublas::brgemm_release();
  }
  return {outputs, reset_update, to_candidate, to_update, to_reset, outputs_bf16};
}

std::vector<at::Tensor> gru_forward(const at::Tensor& sequences, const at::Tensor& weight_in, const at::Tensor& bias_in,
                                    const at::Tensor& weight_hh, const at::Tensor& bias_hh, bool bf16_products) {
  return gru_recurrence<true>(sequences, weight_in, bias_in, weight_hh, bias_hh, bf16_products);
}

// gru_forward without what the backward pass needs: evaluation and serving. -> outputs (T, B, H)
at::Tensor gru_inference(const at::Tensor& sequences, const at::Tensor& weight_in, const at::Tensor& bias_in,
                         const at::Tensor& weight_hh, const at::Tensor& bias_hh, bool bf16_products) {
  return gru_recurrence<false>(sequences, weight_in, bias_in, weight_hh, bias_hh, bf16_products)[0];
}

// models/gru_sequence.py's GRUSequence.backward, from the buffers gru_forward returned. grad_outputs (T, B, H).
// -> gradients of sequences (T, B, F) (empty unless wanted), weight_in (3H, F) in (n, r, z) order, the biases
// as one (4H) vector (n's input part, r, z, n's hidden part), and weight_hh (3H, H)
// The recurrence runs step by step and sums the bias gradients as it goes; the weight and input gradients are then
// whole-sequence products over every step's pre-activation gradients (their bf16 copies under bf16 products).
std::vector<at::Tensor> gru_backward(const at::Tensor& grad_outputs, const at::Tensor& sequences,
                                     const at::Tensor& weight_in, const at::Tensor& weight_hh,
                                     const at::Tensor& reset_update, const at::Tensor& to_candidate,
                                     const at::Tensor& to_update, const at::Tensor& to_reset,
                                     const at::Tensor& outputs, const at::Tensor& outputs_bf16, bool input_grad,
                                     bool bf16_products) {
  for (const auto& [tensor, name] : {std::pair{&grad_outputs, "grad_outputs"}, {&sequences, "sequences"},
                                     {&weight_in, "weight_in"}, {&weight_hh, "weight_hh"},
                                     {&reset_update, "reset_update"}, {&to_candidate, "to_candidate"},
                                     {&to_update, "to_update"}, {&to_reset, "to_reset"}, {&outputs, "outputs"}}) {
    check_float(*tensor, name);
  }
  const int64_t steps = to_candidate.size(0), batch = to_candidate.size(1), size = to_candidate.size(2);
  const auto options = grad_outputs.options();
  // Every step's pre-activation gradients, (T, B, 4H): n's before and after the product with r either side of
  // r's and z's, so [..., :3H] is the input side's (n, r, z) and [..., H:] the hidden side's (r, z, n). With bf16
  // products the weight gradients take bf16 copies, and unless the input's gradient is wanted one step's suffice.
  const bool all_steps = !bf16_products || input_grad;
  auto grads = at::empty({all_steps ? steps : 1, batch, 4 * size}, options);
  auto step_sums = at::empty({steps, 4 * size}, options);  // each step's sums over the batch: the bias gradients
  auto grad_hidden = grad_outputs[steps - 1].clone();
  auto grad_next = at::empty_like(grad_hidden);  // the gradient of the step before's hidden state
  auto no_gradient = at::zeros({batch, size}, options);  // step 0's "step before": no branch in the loop
  const auto packed_hh = bf16_products ? packed_bf16(weight_hh) : at::Tensor();
  // Both sides' pre-activation gradients in bf16, (T, B, 3H) each: the operands of the weight gradients, and the hidden
  // side's of the step's product.
  const auto bf16_options = options.dtype(at::kBFloat16);
  auto input_grads_bf16 = at::empty({bf16_products ? steps : 0, batch, 3 * size}, bf16_options);
  auto hidden_grads_bf16 = at::empty({bf16_products ? steps : 0, batch, 3 * size}, bf16_options);
  for (int64_t step = steps - 1; step >= 0; --step) {
    const float* gates = reset_update.data_ptr<float>() + step * batch * 2 * size;
    const float* candidate_factor = to_candidate.data_ptr<float>() + step * batch * size;
    const float* update_factor = to_update.data_ptr<float>() + step * batch * size;
    const float* reset_factor = to_reset.data_ptr<float>() + step * batch * size;
    const float* before =
        step > 0 ? grad_outputs.data_ptr<float>() + (step - 1) * batch * size : no_gradient.data_ptr<float>();
    const float* dh_all = grad_hidden.data_ptr<float>();
    float* step_grads = grads.data_ptr<float>() + (all_steps ? step : 0) * batch * 4 * size;
    float* next = grad_next.data_ptr<float>();
    at::BFloat16* input_side_bf16 =
        bf16_products ? input_grads_bf16.data_ptr<at::BFloat16>() + step * batch * 3 * size : nullptr;
    at::BFloat16* hidden_side_bf16 =  // step 0's are used by neither product
        bf16_products && step > 0 ? hidden_grads_bf16.data_ptr<at::BFloat16>() + step * batch * 3 * size : nullptr;
    in_rows(batch, size, [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        const int64_t row = b * size;
        const float* __restrict dh = dh_all + row;
        const float* __restrict r = gates + b * 2 * size;
        float* __restrict g = step_grads + b * 4 * size;
#pragma omp simd
        for (int64_t j = 0; j < size; ++j) {
          const float grad_n = dh[j] * candidate_factor[row + j];
          g[j] = grad_n;
          g[size + j] = grad_n * reset_factor[row + j];
          g[2 * size + j] = dh[j] * update_factor[row + j];
          g[3 * size + j] = grad_n * r[j];
          next[row + j] = before[row + j] + dh[j] * r[size + j];  // the direct path through h' = ... + z h
        }
        if (input_side_bf16 != nullptr) {
          write_bf16(g, input_side_bf16 + b * 3 * size, 3 * size);
        }
        if (hidden_side_bf16 != nullptr) {
          write_bf16(g + size, hidden_side_bf16 + b * 3 * size, 3 * size);
        }
      }
    });
    // Summed column by column, each over the batch in order while the step's gradients are in the cache: the same
    // sums whatever the number of threads.
    float* sums = step_sums.data_ptr<float>() + step * 4 * size;
    in_parallel(4 * size, [&](int64_t begin, int64_t end) {
      std::fill(sums + begin, sums + end, 0.0f);
      for (int64_t b = 0; b < batch; ++b) {
        const float* __restrict g = step_grads + b * 4 * size;
#pragma omp simd
        for (int64_t j = begin; j < end; ++j) {
          sums[j] += g[j];
        }
      }
    });
    if (step > 0) {
      if (bf16_products) {
        product_bf16(hidden_grads_bf16.data_ptr<at::BFloat16>() + step * batch * 3 * size, batch, packed_hh,
                     grad_next.data_ptr<float>(), size, /*accumulate=*/true);
      } else {
        grad_next.addmm_(grads[step].narrow(1, size, 3 * size), weight_hh);
      }
      std::swap(grad_hidden, grad_next);
    }
  }
  if (bf16_products) {
    at::native::cpublas::brgemm_release();
  }
  auto grad_bias = step_sums.sum(0);
  // The weight gradients are made transposed, (F, 3H) and (H, 3H), and returned as transposed views: with the
  // T B rows as the inner dimension of a left operand that is read row by row, the products ran faster at the
  // default sizes (the GRU step's time: docs/benchmarks.md, the GRU). The zero initial state adds nothing to
  // weight_hh's gradient: steps 1 to T-1 against the outputs before them. With bf16 products their operands are
  // bf16 too, summed in float32.
  const auto inputs = sequences.reshape({steps * batch, sequences.size(2)});
  const int64_t pairs = (steps - 1) * batch;
  // Every step's input side, (T B, 3H), where all the steps' float32 gradients were kept.
  const auto from_input = all_steps ? grads.view({steps * batch, 4 * size}).narrow(1, 0, 3 * size) : at::Tensor();
  at::Tensor grad_weight_in, grad_weight_hh;
  if (bf16_products) {
    grad_weight_in = at::empty({sequences.size(2), 3 * size}, options);
    product_bf16_f32(inputs.to(at::kBFloat16).t(), input_grads_bf16.view({steps * batch, 3 * size}), grad_weight_in,
                     true);
    grad_weight_hh = at::empty({size, 3 * size}, options);
    product_bf16_f32(outputs_bf16.narrow(0, 0, steps - 1).reshape({pairs, size}).t(),
                     hidden_grads_bf16.narrow(0, 1, steps - 1).reshape({pairs, 3 * size}), grad_weight_hh, true);
  } else {
    grad_weight_in = at::mm(inputs.t(), from_input);
    grad_weight_hh = at::mm(outputs.narrow(0, 0, steps - 1).reshape({pairs, size}).t(),
                            grads.narrow(0, 1, steps - 1).reshape({pairs, 4 * size}).narrow(1, size, 3 * size));
  }
  auto grad_sequences = input_grad ? at::mm(from_input, weight_in).view(sequences.sizes()) : at::empty({0}, options);
  return {grad_sequences, grad_weight_in.t(), grad_bias, grad_weight_hh.t()};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("lstm_forward", &lstm_forward, "the forward loop of models/cells.py's LSTMSequence");
  module.def("lstm_inference", &lstm_inference, "lstm_forward without saving anything for a backward pass");
  module.def("lstm_backward", &lstm_backward, "the backward loop of models/cells.py's LSTMSequence");
  module.def("gru_forward", &gru_forward, "the forward loop of models/gru_sequence.py's GRUSequence");
  module.def("gru_inference", &gru_inference, "gru_forward without saving anything for a backward pass");
  module.def("gru_backward", &gru_backward, "the backward loop of models/gru_sequence.py's GRUSequence");
  module.def("product_bf16_f32", &product_bf16_f32,
             "out = left right from bf16 operands, summed in float32, through MKL where allowed and available");
  module.def("mkl_bf16_products_available", [] { return cblas_gemm_bf16bf16f32 != nullptr; },
             "whether MKL's bf16 GEMM with float32 results was found");
  module.def("bf16_products_available", &bf16_products_available,
             "whether the GRU loops can make their recurrent products in bf16 for this hidden size");
}
