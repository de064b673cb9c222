"""Why a model gave its label: Grad-CAM heatmaps over the photos (`gradcam.py`), and the
pictures `catdog explain` writes, the report shows and the web page's "why?" displays
(`explainer.py`)."""
