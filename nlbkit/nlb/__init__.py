"""The benchmark itself: the dataset registry (`datasets`), its vocabulary (`keys`), HDF5 I/O
(`h5io`), the trials of a tensor file (`tensor_file`) and published results (`published`)."""
