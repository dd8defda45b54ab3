"""EvalAI submission files: merging runs into one HDF5 (`evalai`) and checking a file before
upload (`validate`)."""
