/* libgstcuecast: the elements of cuecast's capture path, written in C so that no Python runs per frame
 * between the camera and the vision backend's shared memory.
 *   cuecastremap  apply a remap table (fisheye correction, table view) to I420, with a luma lookup table
 *   cuecastpack   pack a frame (BGR or I420) plus cuecast's metadata trailer into shmsink's memory
 *   cuecaststamp  a frame's capture wall time as an NTP reference timestamp meta (RTP header extension) */
#include "pack.h"
#include "remap.h"
#include "stamp.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ok = FALSE;
  ok |= GST_ELEMENT_REGISTER (cuecastremap, plugin);
  ok |= GST_ELEMENT_REGISTER (cuecastpack, plugin);
  ok |= GST_ELEMENT_REGISTER (cuecaststamp, plugin);
  return ok;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, cuecast,
    "cuecast capture-path elements (remap, shared-memory packing)",
    plugin_init, VERSION, GST_LICENSE, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
