"""The supervisor (`cuecast serve`): starts and watches the two worker processes, talks to systemd."""
