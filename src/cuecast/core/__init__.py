"""What every layer may use and that knows nothing of cuecast's design: errors and exit codes, logging,
GStreamer initialisation, ports, scheduling priority, loading the native plugin."""
