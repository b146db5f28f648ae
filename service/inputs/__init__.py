"""What comes in: uploaded bytes recognised and decoded at a bounded cost (`decoding.py`,
`dicom.py`, `frame_headers.py`), the shapes a radiograph can have (`shape.py`), what one upload
may cost (`limits.py`), and the answer to "is this a frontal chest X-ray?" (`chest_check.py`:
the DICOM attribute rules, which are data shared with the gateway in cxr_common.dicom_rules, and
the model's image score, applied as the mode says). Failures are the domain errors of `errors.py`."""
