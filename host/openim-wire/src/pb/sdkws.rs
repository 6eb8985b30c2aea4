//! OpenIM protobuf package `sdkws` (the messages imgate and the emulator read).
