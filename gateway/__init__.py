"""cxr-gateway: a DICOM node between a PACS and the scoring service.

The PACS routes studies to it by C-STORE; it keeps each instance on disk, picks the frontal chest
radiographs by the rules the service applies (cxr_common.dicom_rules), has the service score them
with a heatmap, and writes a TID 1500 SR and a Secondary Capture back into the same study, once.

Pipeline: receiver (C-STORE SCP -> state dir + job table) -> worker (quiet study -> score ->
results_sr / results_sc -> sender) -> job table (written, refused, failed -> retried, dead).
"""

MANUFACTURER = "cxr-gateway"  # on everything the gateway writes; how it recognises its own output
