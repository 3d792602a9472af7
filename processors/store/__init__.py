"""Redis: key names, Lua scripts, the encoding of script calls and the client."""
