"""Train, evaluate and export the chest X-ray pneumonia classifier (`python -m model_export`)."""
