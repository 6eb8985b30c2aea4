//! OpenIM protobuf package `msg` (the messages imgate and the emulator read).
