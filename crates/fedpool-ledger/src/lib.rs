//! fedpool-ledger (under construction).
