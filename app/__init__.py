"""MeDiM's Gradio demo: report → image, scan → report and image–report pairs, streamed step by step.

`app.ui.build_demo()` lays out the interface, `app.handlers` holds the event handlers (all model work goes
through `medim.pipeline.MeDiMPipeline`), `app.render` draws the step views. Importing this package loads no model.
"""
