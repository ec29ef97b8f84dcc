import { useState } from "react";

type Props = { url: string | null; name: string; className?: string };

/** The image when the browser can draw it, else a labelled placeholder (TIFF, or a failed decode). */
export function Thumbnail({ url, name, className = "" }: Props) {
  const [failed, setFailed] = useState(false);
  if (url && !failed) {
    return <img className={`thumb ${className}`} src={url} alt={`Preview of ${name}`} onError={() => setFailed(true)} />;
  }
  return (
    <div className={`thumb thumb-placeholder ${className}`} role="img" aria-label={`No preview for ${name}`}>
      <span aria-hidden="true" className="thumb-icon">▦</span>
      <span className="thumb-caption">No preview</span>
      <span className="thumb-name">{name}</span>
    </div>
  );
}
