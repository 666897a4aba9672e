//! Immutable (CHK) files: geometry, the URI extension block, the share layout, the encoder, and
//! the upload and download state machines.
//!
//! The encoding is Tahoe's CHK byte for byte when the codec is zfec (`crs`): same key, storage
//! index, ciphertext, blocks, hash trees, extension block and share bytes.

pub mod download;
pub mod encode;
pub mod layout;
pub mod params;
pub mod share;
pub mod ueb;
pub mod upload;
pub mod verify;

pub use encode::{ChkEncoder, EncodeError, EncodedFile};
pub use layout::{LayoutError, ShareHeader, ShareLayout};
pub use params::{EncodingParams, Geometry, LIT_THRESHOLD};
pub use ueb::{Ueb, UebError};
