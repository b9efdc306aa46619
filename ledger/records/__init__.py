"""Records: the DSSE envelope, the payload schemas of each record kind, and the admission
contract's bounds.
"""
