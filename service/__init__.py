"""REST inference service for the chest X-ray pneumonia classifier (`python -m service`)."""
