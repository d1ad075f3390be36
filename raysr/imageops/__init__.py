"""Pure numpy/OpenCV image operations: resize, colour correction, metrics, degradations.

Every function here takes and returns numpy arrays laid out ``(H, W)`` or
``(H, W, C)`` with ``C`` in {1, 3, 4}, RGB(A) channel order, and one of the
dtypes ``uint8`` [0, 255], ``uint16`` [0, 65535] or ``float32`` [0, 1].
No I/O, no Ray, no torch. Import the submodules directly
(``from raysr.imageops.color import correct_color``); nothing is re-exported.
"""
