"""Scores: nlb_tools' metrics (`metrics`), the one path that scores a run (`evaluate`) and the
tables that print scores (`tables`)."""
