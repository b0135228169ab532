// Re-exports llguidance so its C API (llg_*) ends up in this static library.
pub use llguidance;
