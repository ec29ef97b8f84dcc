import { describe, expect, it } from "vitest";
import type { Health } from "../../../api/client";
import { health } from "../../../testing/fetch";
import { uploadRoute } from "./slides";

describe("uploadRoute", () => {
  it("sends slides straight to the bucket only when the service offers it", () => {
    expect(uploadRoute({ ...health(), slides: { upload: "bucket", max_slide_mb: 4096 } })).toBe("bucket");
    expect(uploadRoute(health())).toBe("form");
  });

  it("takes the form when the health check is unknown or comes from a service without slides in it", () => {
    const { slides: _, ...older } = health();
    expect(uploadRoute(older as unknown as Health)).toBe("form");
    expect(uploadRoute(null)).toBe("form");
  });
});
