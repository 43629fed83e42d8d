/* The pixel kernels on their own: every implementation this CPU runs (plain C always, AVX2 where the CPU
 * has it) against a reference written here from the definitions (OpenCV's fixed-point bilinear remap and
 * its BT.601 I420 -> BGR), on random pictures and maps that reach past every edge. Exit 0 when all agree
 * byte for byte; the first difference is printed. Run by `meson test` (and under qemu-aarch64 for ARM). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"

static uint32_t rng = 12345;
static uint32_t
rnd (void)
{
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* OpenCV remap, INTER_LINEAR with INTER_TAB_SIZE 32, BORDER_CONSTANT: four taps, weights
 * (32 - fx)(32 - fy), fx(32 - fy), (32 - fx)fy, fx fy; a tap outside the picture reads the border. */
static uint8_t
ref_remap_pixel (const uint8_t * src, int stride, int w, int h, int sx, int sy, int fi, uint8_t border,
    const uint8_t * lut)
{
  const int fx = fi & 31, fy = (fi >> 5) & 31;
  const int wt[4] = { (32 - fx) * (32 - fy), fx * (32 - fy), (32 - fx) * fy, fx * fy };
  const int dx[4] = { 0, 1, 0, 1 }, dy[4] = { 0, 0, 1, 1 };
  int sum = 0;
  for (int k = 0; k < 4; k++) {
    const int x = sx + dx[k], y = sy + dy[k];
    const int v = (x >= 0 && x < w && y >= 0 && y < h) ? src[y * stride + x] : border;
    sum += v * wt[k];
  }
  const int v = (sum + 512) >> 10;
  return lut ? lut[v] : (uint8_t) v;
}

static int
clamp255 (int v)
{
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/* OpenCV's COLOR_YUV2BGR_I420 (BT.601 limited range, 20-bit fixed point). */
static void
ref_bgr_pixel (int y, int u, int v, uint8_t * out)
{
  const int yy = (y > 16 ? y - 16 : 0) * 1220542, uu = u - 128, vv = v - 128, half = 1 << 19;
  out[0] = (uint8_t) clamp255 ((yy + half + 2116026 * uu) >> 20);
  out[1] = (uint8_t) clamp255 ((yy + half - 852492 * vv - 409993 * uu) >> 20);
  out[2] = (uint8_t) clamp255 ((yy + half + 1673527 * vv) >> 20);
}

static int failures = 0;

static void
check_remap (CcKernel k, int w, int h, int out_w, int out_h, int with_lut)
{
  const int stride = w + 7, dst_stride = out_w + 3;
  uint8_t *src = malloc ((size_t) stride * h), *dst = calloc ((size_t) dst_stride * out_h, 1);
  int16_t *xy = malloc ((size_t) out_w * out_h * 2 * sizeof *xy);
  uint16_t *frac = malloc ((size_t) out_w * out_h * sizeof *frac);
  uint8_t lut[256];
  for (int i = 0; i < stride * h; i++)
    src[i] = (uint8_t) rnd ();
  for (int i = 0; i < 256; i++)
    lut[i] = (uint8_t) (255 - i / 2);
  for (int i = 0; i < out_w * out_h; i++) {
    /* most samples inside, some at and past every edge */
    const int wide = (rnd () % 8) == 0;
    xy[2 * i] = (int16_t) (wide ? (int) (rnd () % (unsigned) (w + 8)) - 4 : (int) (rnd () % (unsigned) w));
    xy[2 * i + 1] = (int16_t) (wide ? (int) (rnd () % (unsigned) (h + 8)) - 4 : (int) (rnd () % (unsigned) h));
    frac[i] = (uint16_t) (rnd () % 1024);
  }
  const uint8_t border = (uint8_t) (rnd () % 256);
  /* two calls over a row split, as the worker pool makes them */
  const int mid = out_h / 3;
  cc_remap_plane (k, src, stride, w, h, dst, dst_stride, xy, frac, out_w, 0, mid, border, with_lut ? lut : NULL);
  cc_remap_plane (k, src, stride, w, h, dst, dst_stride, xy, frac, out_w, mid, out_h, border,
      with_lut ? lut : NULL);
  for (int y = 0; y < out_h && failures < 5; y++)
    for (int x = 0; x < out_w; x++) {
      const int i = y * out_w + x;
      const uint8_t want = ref_remap_pixel (src, stride, w, h, xy[2 * i], xy[2 * i + 1], frac[i], border,
          with_lut ? lut : NULL);
      if (dst[y * dst_stride + x] != want) {
        fprintf (stderr, "FAIL remap %s %dx%d->%dx%d lut=%d at (%d,%d): %d, reference %d\n",
            cc_kernel_name (k), w, h, out_w, out_h, with_lut, x, y, dst[y * dst_stride + x], want);
        failures++;
        break;
      }
    }
  free (src);
  free (dst);
  free (xy);
  free (frac);
}

static void
check_bgr (CcKernel k, int w, int h)
{
  const int cw = (w + 1) / 2, ch = (h + 1) / 2, ys = w + 5, cs = cw + 3, ds = w * 3 + 11;
  uint8_t *y = malloc ((size_t) ys * h), *u = malloc ((size_t) cs * ch), *v = malloc ((size_t) cs * ch);
  uint8_t *dst = calloc ((size_t) ds * h, 1);
  for (int i = 0; i < ys * h; i++)
    y[i] = (uint8_t) rnd ();
  for (int i = 0; i < cs * ch; i++) {
    u[i] = (uint8_t) rnd ();
    v[i] = (uint8_t) rnd ();
  }
  const int mid = 2 * (h / 4);
  cc_i420_to_bgr (k, y, ys, u, cs, v, cs, dst, ds, w, 0, mid);
  cc_i420_to_bgr (k, y, ys, u, cs, v, cs, dst, ds, w, mid, h);
  for (int r = 0; r < h && failures < 5; r++)
    for (int x = 0; x < w; x++) {
      uint8_t want[3];
      ref_bgr_pixel (y[r * ys + x], u[(r / 2) * cs + x / 2], v[(r / 2) * cs + x / 2], want);
      if (memcmp (dst + r * ds + 3 * x, want, 3) != 0) {
        fprintf (stderr, "FAIL i420->bgr %s %dx%d at (%d,%d)\n", cc_kernel_name (k), w, h, x, r);
        failures++;
        break;
      }
    }
  free (y);
  free (u);
  free (v);
  free (dst);
}

int
main (void)
{
  CcKernel kernels[2] = { CC_KERNEL_PLAIN_C, CC_KERNEL_AVX2 };
  for (int n = 0; n < 2; n++) {
    const CcKernel k = kernels[n];
    if (cc_kernel_resolve (k) != k) {
      printf ("%s: not on this CPU, skipped\n", cc_kernel_name (k));
      continue;
    }
    const int sizes[][4] = { {2, 2, 2, 2}, {37, 23, 30, 18}, {640, 360, 640, 360}, {1920, 1080, 1280, 720},
    {101, 77, 203, 9}
    };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int lut = 0; lut < 2; lut++)
        check_remap (k, sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], lut);
    const int bgr[][2] = { {2, 2}, {15, 7}, {16, 2}, {33, 9}, {640, 360}, {1920, 1080} };
    for (size_t s = 0; s < sizeof bgr / sizeof bgr[0]; s++)
      check_bgr (k, bgr[s][0], bgr[s][1]);
    printf ("%s: %s\n", cc_kernel_name (k), failures ? "FAILED" : "every byte equals the reference");
  }
  if (cc_kernel_resolve (CC_KERNEL_AUTO) == CC_KERNEL_AUTO || cc_kernel_parse ("bogus") != -1
      || cc_kernel_parse ("plain-c") != CC_KERNEL_PLAIN_C) {
    fprintf (stderr, "FAIL kernel choice\n");
    failures++;
  }
  return failures ? 1 : 0;
}
