"""NWB files to NLB tensors, equal to nlb_tools': reading (`nwb`), windows, binning, decimation,
inputs, PSTHs, eval targets, the tensor file (`tensors`), and the benchmark against nlb_tools."""
