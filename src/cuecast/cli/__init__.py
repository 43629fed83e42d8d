"""The command line: argument parsing and the commands a user runs (`cuecast ...`). Nothing imports it; it
imports the layers below to start them."""
