#pragma once
#include <gst/video/video.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS
#define GST_TYPE_CUECAST_REMAP (gst_cuecast_remap_get_type ())
G_DECLARE_FINAL_TYPE (GstCuecastRemap, gst_cuecast_remap, GST, CUECAST_REMAP, GstVideoFilter)
GST_ELEMENT_REGISTER_DECLARE (cuecastremap);

/* The `map` property's layout (all little-endian, written by cuecast/lens/maps.py: remap_table): a 64-byte header
 * then four arrays. The map says, for each output pixel, where to sample the input; it is built in Python
 * (OpenCV's fisheye model, a table homography, anything) and this element only applies it. */
#define CC_MAP_MAGIC "CCREMAP1"
#define CC_MAP_HEADER 64
typedef struct
{
  char magic[8];
  guint32 in_w, in_h, out_w, out_h;
  guint32 reserved[10];
} CcMapHeader;
/* then: int16 luma_xy[out_h][out_w][2], uint16 luma_frac[out_h][out_w],
 *       int16 chroma_xy[out_h/2][out_w/2][2], uint16 chroma_frac[out_h/2][out_w/2] */

G_END_DECLS
