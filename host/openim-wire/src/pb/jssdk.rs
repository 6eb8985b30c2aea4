//! OpenIM protobuf package `jssdk` (the messages imgate and the emulator read).
