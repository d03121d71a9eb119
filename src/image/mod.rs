//! Images: references, content digests, the registry client, layer unpacking, the shared layer
//! cache, pulls, the catalog CRI sees, and archive imports.

pub mod catalog;
pub mod digest;
pub mod import;
pub mod layers;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod unpack;

pub use catalog::Images;
