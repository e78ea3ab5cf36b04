//! carto-client: see docs/architecture.md
