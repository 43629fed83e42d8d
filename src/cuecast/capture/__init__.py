"""THE CAPTURE PROCESS: the camera, the correction (native remap), the backend's shared memory and the internal
ring the streaming process reads. Nothing people-facing runs here, so no viewer can slow the backend."""
