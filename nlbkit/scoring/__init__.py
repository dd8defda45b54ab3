"""Scores: nlb_tools' metrics (`metrics`), the one path that scores a run (`evaluate`), tables,
few-shot co-bps (`fewshot`, `fewshot_run`) and the rank among published entries (`leaderboard`)."""
