"""Importing this module fixes nlb_tools' row order under pandas >= 1.4 (reference environment).

NLB_SPEC.md, "Known defects": `NWBDataset.load` concatenates the spike frame and the behaviour
series without sorting the merged time index, so a behaviour series that does not span the whole
session leaves rows out of time order. `NWBDataset.load` is wrapped so that the frame it returns has
its time index sorted, as pandas 1.3 did. Nothing else in nlb_tools is changed.
"""

from nlb_tools.nwb_interface import NWBDataset

_original_load = NWBDataset.load


def _sorted_load(self, fpath, split_heldout=True, skip_fields=()):
    data, trial_info, descriptions, bin_width = _original_load(
        self, fpath, split_heldout=split_heldout, skip_fields=list(skip_fields)
    )
    return data.sort_index(), trial_info, descriptions, bin_width


NWBDataset.load = _sorted_load
