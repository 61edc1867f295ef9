"""The doctor's benchmark zoo: user models written the way blog posts and Keras users write them,
each with a planted fault (or none), and the folders they train on (``cases.py``)."""
