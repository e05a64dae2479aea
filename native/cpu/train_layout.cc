// train_layout.cc: the layout ops of the train family (permute, concat / split, slice and
// its backward, ViT patchify / unpatchify), all through one strided-copy kernel.
//
// strided_copy folds its index space first (drops dims of size 1, merges dims that are
// contiguous on both sides), then picks one of three inner kernels:
//   rows:  the innermost dim is contiguous on both sides: memcpy per row (long rows are
//          cut into pieces so that one big row still spreads over the threads);
//          [B,S,H,D] <-> [B,H,S,D] copies D-element rows, concat / slice whole blocks;
//   tiles: dst is contiguous along the innermost dim and src along another one k (a
//          transpose): 32 x 32 element tiles over (k, innermost), so both sides stay in L1;
//   elements: anything else, one element at a time along the innermost dim.
// Work is split into units (rows, row pieces or tile strips) handed to parallel_for in
// contiguous ranges; each range walks its units with an odometer (no division per row).
#include <algorithm>
#include <cstring>

#include "common.h"
#include "threadpool.h"
#include "train.h"

namespace l2c {
namespace cpu {
namespace {

constexpr int kTile = 32;                       // transpose tile (elements per side)
constexpr int64_t kPieceBytes = 256 << 10;      // longest memcpy in one unit
constexpr int64_t kGrainBytes = 32 << 10;       // least work per thread chunk

// Offsets of a walk over m dims (outer..inner): seek to a linear index, then step.
struct Odometer {
  int m = 0;
  int64_t n[L2C_MAX_DIMS + 1] = {}, ss[L2C_MAX_DIMS + 1] = {}, sd[L2C_MAX_DIMS + 1] = {};
  int64_t idx[L2C_MAX_DIMS + 1] = {};
  int64_t os = 0, od = 0;
  void add(int64_t size, int64_t s_stride, int64_t d_stride) {
    n[m] = size;
    ss[m] = s_stride;
    sd[m] = d_stride;
    m++;
  }
  int64_t count() const {
    int64_t c = 1;
    for (int i = 0; i < m; i++) c *= n[i];
    return c;
  }
  void seek(int64_t lin) {
    os = od = 0;
    for (int i = m - 1; i >= 0; i--) {
      idx[i] = lin % n[i];
      lin /= n[i];
      os += idx[i] * ss[i];
      od += idx[i] * sd[i];
    }
  }
  void next() {
    for (int i = m - 1; i >= 0; i--) {
      os += ss[i];
      od += sd[i];
      if (++idx[i] < n[i]) return;
      os -= ss[i] * n[i];
      od -= sd[i] * n[i];
      idx[i] = 0;
    }
  }
};

template <class T>
void copy_tiles(const Odometer &proto, int64_t b, int64_t e, char *dst, const char *src,
                int64_t rows_total, int64_t ssk, int64_t sdk, int64_t cols, int64_t ssj) {
  // Unit = one strip of up to kTile rows of dim k (the odometer's innermost dim), all
  // columns of the innermost dim (dst stride 1, src stride ssj) in tiles of kTile.
  Odometer o = proto;
  o.seek(b);
  for (int64_t u = b; u < e; u++, o.next()) {
    int64_t r0 = o.idx[o.m - 1] * kTile;
    int64_t rows = std::min<int64_t>(kTile, rows_total - r0);
    const T *s = reinterpret_cast<const T *>(src) + o.os;
    T *d = reinterpret_cast<T *>(dst) + o.od;
    // Through a small buffer, so that both sides are walked along their contiguous dim:
    // reading src along j with a large stride thrashed one L1 set (a power-of-two row
    // pitch maps all the tile's lines to the same set): 2048^2 float32 ran at 1.4 GB/s.
    T buf[kTile][kTile];
    for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
      int64_t jn = std::min<int64_t>(kTile, cols - j0);
      for (int64_t j = 0; j < jn; j++) {
        const T *sr = s + (j0 + j) * ssj;
        for (int64_t i = 0; i < rows; i++) buf[i][j] = sr[i * ssk];
      }
      for (int64_t i = 0; i < rows; i++) {
        T *dr = d + i * sdk + j0;
        for (int64_t j = 0; j < jn; j++) dr[j] = buf[i][j];
      }
    }
  }
}

template <class T>
void copy_elements(const Odometer &proto, int64_t b, int64_t e, char *dst, const char *src,
                   int64_t len, int64_t ssj, int64_t sdj) {
  Odometer o = proto;
  o.seek(b);
  for (int64_t u = b; u < e; u++, o.next()) {
    const T *s = reinterpret_cast<const T *>(src) + o.os;
    T *d = reinterpret_cast<T *>(dst) + o.od;
    for (int64_t j = 0; j < len; j++) d[j * sdj] = s[j * ssj];
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void strided_copy(void *dst_, const int64_t *dst_stride, const void *src_, const int64_t *src_stride,
                  const int64_t *shape, int nd, int64_t es) {
  char *dst = static_cast<char *>(dst_);
  const char *src = static_cast<const char *>(src_);
  // Fold: drop size-1 dims, merge a dim into the next inner one when both sides allow.
  int64_t n[L2C_MAX_DIMS], ss[L2C_MAX_DIMS], sd[L2C_MAX_DIMS];
  int m = 0;
  for (int i = 0; i < nd; i++) {
    if (shape[i] == 0) return;
    if (shape[i] == 1) continue;
    n[m] = shape[i];
    ss[m] = src_stride[i];
    sd[m] = dst_stride[i];
    m++;
  }
  int f = 0;
  for (int i = 0; i < m; i++) {
    if (f > 0 && ss[f - 1] == n[i] * ss[i] && sd[f - 1] == n[i] * sd[i]) {
      n[f - 1] *= n[i];
      ss[f - 1] = ss[i];
      sd[f - 1] = sd[i];
    } else {
      n[f] = n[i];
      ss[f] = ss[i];
      sd[f] = sd[i];
      f++;
    }
  }
  m = f;
  if (m == 0) {
    std::memcpy(dst, src, (size_t)es);
    return;
  }
  const int in = m - 1;
  Odometer o;
  if (ss[in] == 1 && sd[in] == 1) {
    // Rows: outer dims, then pieces of each row.
    int64_t row = n[in], piece = std::max<int64_t>(1, kPieceBytes / es);
    int64_t pieces = ceil_div(row, piece);
    if (pieces == 1) piece = row;
    for (int i = 0; i < in; i++) o.add(n[i], ss[i], sd[i]);
    o.add(pieces, piece, piece);
    int64_t unit_bytes = std::min(row, piece) * es;
    parallel_for(o.count(), std::max<int64_t>(1, kGrainBytes / unit_bytes), [&](int64_t b, int64_t e) {
      Odometer w = o;
      w.seek(b);
      for (int64_t u = b; u < e; u++, w.next()) {
        int64_t len = std::min(piece, row - w.idx[w.m - 1] * piece);
        std::memcpy(dst + w.od * es, src + w.os * es, (size_t)(len * es));
      }
    });
    return;
  }
  int k = -1;  // a dim contiguous in src, for the tiled transpose
  if (sd[in] == 1)
    for (int i = 0; i < in; i++)
      if (ss[i] == 1) k = i;
  if (k >= 0) {
    for (int i = 0; i < in; i++)
      if (i != k) o.add(n[i], ss[i], sd[i]);
    o.add(ceil_div(n[k], kTile), kTile * ss[k], kTile * sd[k]);
    int64_t unit_bytes = std::min<int64_t>(kTile, n[k]) * n[in] * es;
    parallel_for(o.count(), std::max<int64_t>(1, kGrainBytes / unit_bytes), [&](int64_t b, int64_t e) {
      if (es == 2)
        copy_tiles<uint16_t>(o, b, e, dst, src, n[k], ss[k], sd[k], n[in], ss[in]);
      else
        copy_tiles<uint32_t>(o, b, e, dst, src, n[k], ss[k], sd[k], n[in], ss[in]);
    });
    return;
  }
  for (int i = 0; i < in; i++) o.add(n[i], ss[i], sd[i]);
  int64_t unit_bytes = n[in] * es;
  parallel_for(o.count(), std::max<int64_t>(1, kGrainBytes / unit_bytes), [&](int64_t b, int64_t e) {
    if (es == 2)
      copy_elements<uint16_t>(o, b, e, dst, src, n[in], ss[in], sd[in]);
    else
      copy_elements<uint32_t>(o, b, e, dst, src, n[in], ss[in], sd[in]);
  });
}

namespace {
void contiguous_strides(const l2c_tensor &t, int64_t *st) {
  int64_t s = 1;
  for (int i = t.ndim - 1; i >= 0; i--) {
    st[i] = s;
    s *= t.shape[i];
  }
}
int64_t esize(const l2c_tensor &t) { return (int64_t)l2c_dtype_size(t.dtype); }
}  // namespace

void permute(const l2c_tensor &x, const l2c_tensor &out, const int32_t *dims) {
  int64_t xs[L2C_MAX_DIMS], os[L2C_MAX_DIMS], ps[L2C_MAX_DIMS];
  contiguous_strides(x, xs);
  contiguous_strides(out, os);
  for (int i = 0; i < out.ndim; i++) ps[i] = xs[dims[i]];
  strided_copy(out.data, os, x.data, ps, out.shape, out.ndim, esize(x));
}

void concat(const std::vector<const l2c_tensor *> &parts, const l2c_tensor &whole, int dim,
            bool split) {
  int64_t ws[L2C_MAX_DIMS];
  contiguous_strides(whole, ws);
  int64_t es = esize(whole), off = 0;
  for (const l2c_tensor *p : parts) {
    int64_t ps[L2C_MAX_DIMS];
    contiguous_strides(*p, ps);
    char *w = static_cast<char *>(whole.data) + off * ws[dim] * es;
    if (split)
      strided_copy(p->data, ps, w, ws, p->shape, p->ndim, es);
    else
      strided_copy(w, ws, p->data, ps, p->shape, p->ndim, es);
    off += p->shape[dim];
  }
}

void slice_forward(const l2c_tensor &whole, const l2c_tensor &part, int dim, int64_t start) {
  int64_t ws[L2C_MAX_DIMS], ps[L2C_MAX_DIMS];
  contiguous_strides(whole, ws);
  contiguous_strides(part, ps);
  int64_t es = esize(whole);
  const char *w = static_cast<const char *>(whole.data) + start * ws[dim] * es;
  strided_copy(part.data, ps, w, ws, part.shape, part.ndim, es);
}

void slice_backward(const l2c_tensor &whole, const l2c_tensor &part, int dim, int64_t start) {
  // whole as [outer, D, inner]: zero [0, start) and [start + len, D) of each outer row,
  // then copy the part in.
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; i++) outer *= whole.shape[i];
  for (int i = dim + 1; i < whole.ndim; i++) inner *= whole.shape[i];
  int64_t D = whole.shape[dim], len = part.shape[dim], es = esize(whole);
  char *w = static_cast<char *>(whole.data);
  int64_t pre = start * inner * es, post = (D - start - len) * inner * es, row = D * inner * es;
  if (row > 0 && pre + post > 0)
    parallel_for(outer, std::max<int64_t>(1, kGrainBytes / std::max<int64_t>(1, pre + post)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t o = b; o < e; o++) {
                     char *r = w + o * row;
                     if (pre) std::memset(r, 0, (size_t)pre);
                     if (post) std::memset(r + row - post, 0, (size_t)post);
                   }
                 });
  int64_t ws[L2C_MAX_DIMS], ps[L2C_MAX_DIMS];
  contiguous_strides(whole, ws);
  contiguous_strides(part, ps);
  strided_copy(w + start * ws[dim] * es, ws, part.data, ps, part.shape, part.ndim, es);
}

void patchify(const l2c_tensor &images, const l2c_tensor &patches, int64_t p, bool backward) {
  int64_t B = images.shape[0], C = images.shape[1], H = images.shape[2], W = images.shape[3];
  int64_t gh = H / p, gw = W / p;
  // Index space in patch order [B, gh, gw, C, py, px].
  int64_t shape[6] = {B, gh, gw, C, p, p};
  int64_t is[6] = {C * H * W, p * W, p, H * W, W, 1};
  int64_t ps[6] = {gh * gw * C * p * p, gw * C * p * p, C * p * p, p * p, p, 1};
  int64_t es = esize(images);
  if (backward)
    strided_copy(images.data, is, patches.data, ps, shape, 6, es);
  else
    strided_copy(patches.data, ps, images.data, is, shape, 6, es);
}

}  // namespace cpu
}  // namespace l2c
