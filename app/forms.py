"""The base of every form the pages post."""

from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm


class PageForm(FlaskForm):
    """A form filled from a form body only. Flask-WTF also fills a form from a JSON body; a page's
    form would then be reached past what guards form bodies (the NUL-character check, the
    login budgets' reading of the typed email), so JSON leaves it empty, and its validation says
    what is missing."""

    class Meta:
        def wrap_formdata(self, form, formdata):
            wrapped = super().wrap_formdata(form, formdata)
            if wrapped is not None and wrapped is not formdata and request.is_json:
                return None
            return wrapped
