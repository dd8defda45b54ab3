"""The benchmark itself: the dataset registry (`datasets`), its vocabulary (`keys`), HDF5 I/O
(`h5io`), the trials of a tensor file (`tensor_file`), published results (`published`) and the
marker of generated data (`marker`)."""
