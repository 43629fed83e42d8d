/* Per-frame pixel kernels of the native plugin: plain C that the compiler vectorizes where it can.
 *
 * The remap is bit-exact with OpenCV's cv2.remap(INTER_LINEAR, BORDER_CONSTANT) on CV_16SC2 + CV_16UC1
 * maps (the fixed-point form cv2.convertMaps makes): OpenCV's 15-bit bilinear weights are the 10-bit
 * products (32 - fx)(32 - fy) etc. times 32, so (sum + 512) >> 10 here equals its (sum + 16384) >> 15.
 * The I420 -> BGR conversion is OpenCV's COLOR_YUV2BGR_I420 arithmetic (BT.601, limited range, 20-bit
 * fixed point), so both can be tested against the Python/OpenCV reference for identical output. */
#pragma once

#include <stdint.h>

/* Which implementation a call runs. Chosen per call (each element has a `kernel` property), so one process
 * can compare them; CC_KERNEL_AVX2 where the CPU lacks it (or on ARM) runs the plain C. */
typedef enum
{
  CC_KERNEL_AUTO = 0,           /* the best this CPU runs */
  CC_KERNEL_PLAIN_C = 1,        /* portable C the compiler vectorizes (the Raspberry Pi's path) */
  CC_KERNEL_AVX2 = 2,           /* x86-64 with AVX2 */
} CcKernel;

/* What `want` runs as on this CPU (never CC_KERNEL_AUTO). */
CcKernel cc_kernel_resolve (CcKernel want);
/* "plain-c" or "avx2"; cc_kernel_parse gives -1 for an unknown name ("auto" is CC_KERNEL_AUTO). */
const char *cc_kernel_name (CcKernel k);
int cc_kernel_parse (const char *name);

/* Remap rows [row0, row1) of one 8-bit plane. `xy` holds (sx, sy) int16 pairs and `frac` the 5+5 bit
 * fraction index (fy * 32 + fx) per output pixel, `map_w` per row. `lut` (256 entries) or NULL. */
void cc_remap_plane (CcKernel k, const uint8_t * src, int src_stride, int src_w, int src_h,
    uint8_t * dst, int dst_stride, const int16_t * xy, const uint16_t * frac, int map_w,
    int row0, int row1, uint8_t border, const uint8_t * lut);

/* Convert rows [row0, row1) (row0 even) of an I420 frame into packed BGR (dst_stride bytes per row). */
void cc_i420_to_bgr (CcKernel k, const uint8_t * y, int y_stride, const uint8_t * u, int u_stride,
    const uint8_t * v, int v_stride, uint8_t * dst, int dst_stride, int width, int row0, int row1);

/* Copy rows [row0, row1) of a plane `width` bytes wide. */
void cc_copy_plane (const uint8_t * src, int src_stride, uint8_t * dst, int dst_stride, int width,
    int row0, int row1);
