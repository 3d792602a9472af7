"""`dialer-stats bench`: the performance figures, each against a reference run in the same
process, on the embedded broker and valkey."""
