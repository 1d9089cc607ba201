//! fedpool-privacy (under construction).
