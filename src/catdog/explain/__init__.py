"""Why a model gave its label.

- `gradcam.py`: Grad-CAM heatmaps of the regions that drove a class's score.
- `explainer.py`: a run's explanations of images (label, heatmap, out-of-distribution score),
  as `catdog explain` writes them, the report shows them and the web page's "why?" displays them.
"""
