"""The benchmark itself: the dataset registry (`datasets`), its vocabulary (`keys`), HDF5 I/O with
one-line errors (`h5io`) and the trial sets read from a tensor file (`tensor_file`)."""
