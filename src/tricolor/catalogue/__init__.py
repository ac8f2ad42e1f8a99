"""The catalogue: label a collection through `classify` once (`tricolor label`), then find
pictures in it by class and colour (`tricolor search`, the UI's Catalogue tab).

`store` and `search` need only SQLAlchemy (the UI reads the store without Triton); `labeller`
talks to Triton through `tricolor.client`.
"""
