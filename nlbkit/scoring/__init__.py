"""Scores: nlb_tools' metrics (`metrics`), the one path that scores a run (`evaluate`), tables,
few-shot co-bps on given latents (`fewshot`) and the rank among published entries (`leaderboard`).
A run's own few-shot co-bps, which needs its trained model, is `nlbkit.train.fewshot`."""
