//! carto-sim
