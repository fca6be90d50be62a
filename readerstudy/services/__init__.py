"""Writes of reader-study data (`<entity>_<action>`, keyword-only). One module per concept:

- `imagesets`: register image sets and their images (used by generation/ and evaluation/ too);
- `blinding`: re-encode study images so that only their pixels differ;
- further modules: building, importing, assigning, answering.
"""
