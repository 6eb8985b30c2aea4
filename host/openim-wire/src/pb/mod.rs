//! The protobuf payloads of msg-gateway frames (contract §5.6) and of the `/jssdk` routes
//! (contract §1.3), as `prost` messages with OpenIM's field numbers.

pub mod jssdk;
pub mod msg;
pub mod push;
pub mod sdkws;
