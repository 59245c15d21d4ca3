"""The one bound on an image size: every size flag of the commands, and the library's checks under them."""

# 8192 a side (an 8K frame) and 64 Mpixel in all, checked before anything is allocated: far above
# any real segmentation input, far below what exhausts memory.
MAX_SIDE = 8192
MAX_PIXELS = 8192 * 8192
