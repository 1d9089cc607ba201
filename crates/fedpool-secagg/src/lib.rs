//! fedpool-secagg (under construction).
