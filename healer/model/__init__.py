"""The model behind one small interface (`engine.Engine`): load once, answer batches of images and questions."""
