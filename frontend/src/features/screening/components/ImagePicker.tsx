import { useState, type DragEvent } from "react";
import { formatBytes } from "../../../lib/format";
import { Thumbnail } from "./Thumbnail";

type Props = {
  file: File | null;
  previewUrl: string | null;
  disabled: boolean;
  onPick: (file: File) => void;
};

/** A file input dressed as a drop zone: click, keyboard (Enter/Space on the input) or drag-and-drop. */
export function ImagePicker({ file, previewUrl, disabled, onPick }: Props) {
  const [dragging, setDragging] = useState(false);

  function drop(event: DragEvent<HTMLDivElement>) {
    event.preventDefault();
    setDragging(false);
    const dropped = event.dataTransfer.files[0];
    if (dropped && !disabled) onPick(dropped);
  }

  return (
    <div
      className={`dropzone${dragging ? " is-dragging" : ""}${file ? " has-file" : ""}`}
      onDragOver={(event) => {
        event.preventDefault();
        if (!disabled) setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={drop}
      data-testid="dropzone"
    >
      <input
        id="image-file"
        className="visually-hidden"
        type="file"
        accept="image/*,.tif,.tiff"
        disabled={disabled}
        aria-describedby="image-file-hint"
        onChange={(event) => {
          const picked = event.target.files?.[0];
          if (picked) onPick(picked);
          event.target.value = ""; // picking the same file again still fires change
        }}
      />
      {file ? (
        <div className="picked">
          <Thumbnail key={previewUrl ?? file.name} url={previewUrl} name={file.name} className="preview" />
          <div className="picked-meta">
            <span className="picked-name">{file.name}</span>
            <span className="muted">{formatBytes(file.size)}</span>
            <label htmlFor="image-file" className="button button-secondary">
              Choose another image
            </label>
          </div>
        </div>
      ) : (
        <label htmlFor="image-file" className="dropzone-label">
          <span aria-hidden="true" className="dropzone-icon">⇪</span>
          <span className="dropzone-title">Choose an H&amp;E image</span>
        </label>
      )}
      <p id="image-file-hint" className="muted small">
        or drag and drop it here · PNG, JPEG, TIFF, GIF, BMP or WebP
      </p>
    </div>
  );
}
