//! OpenIM protobuf package `push` (the messages imgate and the emulator read).
