"""cuecast-testcam: user-space V4L2 cameras (a UVC webcam's behaviour) for machines with no /dev/video* and
no kernel modules. spec.py reads a camera spec, picture.py makes the frames, daemon.py owns every camera's
state and paces its frames, cli.py is the `cuecast-testcam` command; the LD_PRELOAD library that makes
programs see the devices is native/testcam/shim.c. Nothing in the service imports this package."""
